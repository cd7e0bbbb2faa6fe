"""Hostile input against the parser and the policy loader: never a crash, always a specific reason."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.core.events import FUTURE_TOLERANCE_MS, Invalid, decode
from monitor.core.policy import parse_policy
from monitor.errors import PolicyError
from tests.conftest import POLICY_TOML, raw
from tests.corpus import CORPUS
from tests.services import REPO


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_gets_the_expected_reason(name: str) -> None:
    payload, reason = CORPUS[name]
    result = decode(payload, not_after_ms=time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS)
    if reason is None:
        assert not isinstance(result, Invalid), result
    else:
        assert isinstance(result, Invalid) and result.reason == reason


def test_every_reason_the_docs_promise_is_in_the_corpus() -> None:
    readme = (REPO / "docs" / "policy.md").read_text()
    section = readme[readme.index("with one of these reasons:") : readme.index("The summary counts them by reason")]
    promised = {reason.split("<")[0] for reason in re.findall(r"`([a-z_0-9]+:?(?:<path>)?)`", section)}
    produced = {reason.split(":")[0] + (":" if ":" in reason else "") for _, reason in CORPUS.values() if reason}
    assert len(promised) >= 11 and promised == produced


def test_duplicate_keys_last_one_wins() -> None:
    payload, _ = CORPUS["duplicate keys"]
    result = decode(payload)
    assert not isinstance(result, Invalid) and result.request_id == "r1"


def test_future_events_are_refused_only_beyond_the_tolerance() -> None:
    now_ms = 1_780_000_000_000
    soon = raw("request", submitted_at="2026-05-28T21:00:00Z")  # about 8 h after now_ms
    assert not isinstance(decode(soon, not_after_ms=now_ms + FUTURE_TOLERANCE_MS), Invalid)
    assert decode(soon, not_after_ms=now_ms) == Invalid("out_of_range:submitted_at")


_toml_scalars = st.one_of(
    st.integers(),
    st.text(max_size=30),
    st.booleans(),
    st.floats(allow_nan=True),
    st.dates().map(str),
    st.lists(st.text(max_size=10), max_size=3),
)
_keys = st.sampled_from(
    [
        "id",
        "requesters",
        "disclosers",
        "effective_from",
        "effective_until",
        "permitted_fields",
        "required_request_fields",
        "response_sla",
        "join_window",
        "orphan_grace",
        "disposal_deadline",
        "max_disclosures_per_day",
        "max_batch_size",
        "placeholder_values",
        "required_match",
        "authorized_signatories",
        "bogus",
    ]
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and value != value:
        return "nan"
    return str(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _toml_scalars, max_size=8))
def test_policy_loader_gives_a_policy_or_a_specific_error(table: dict[str, object]) -> None:
    body = "[[agreement]]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in table.items())
    try:
        policy = parse_policy(body, "fuzz.toml")
    except PolicyError as exc:
        assert exc.reason and "fuzz.toml" in str(exc)
    else:
        assert len(policy.agreements) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_as_a_policy_never_crashes(body: str) -> None:
    try:
        parse_policy(body, "fuzz.toml")
    except PolicyError as exc:
        assert "fuzz.toml" in str(exc)


@given(st.integers(min_value=0, max_value=len(POLICY_TOML) - 1), st.characters())
@example(21, "\ud800")  # a lone surrogate: no UTF-8 for the version hash
def test_a_policy_with_one_character_changed_loads_or_is_refused_clearly(position: int, char: str) -> None:
    body = POLICY_TOML[:position] + char + POLICY_TOML[position + 1 :]
    try:
        parse_policy(body, "fuzz.toml")
    except PolicyError as exc:
        assert "fuzz.toml" in str(exc)
