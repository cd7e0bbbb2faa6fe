"""The event decoder: valid events, machine-readable reasons for invalid ones, and no crash on any bytes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.events import Disposal, Invalid, Request, Response, decode, disclosed_fields
from tests.conftest import DELETE, raw


def test_valid_events_decode() -> None:
    assert isinstance(decode(raw("request")), Request)
    assert isinstance(decode(raw("response")), Response)
    assert isinstance(decode(raw("disposal")), Disposal)


def test_unknown_fields_are_ignored() -> None:
    assert isinstance(decode(raw("request", future_field={"x": [1, 2]}, subject__eye_color="blue")), Request)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_utf8"),
        (b'{"type": "request", "x": "\xc3"}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'{"type": "gossip"}', "unknown_type"),
        (b'{"request_id": "x"}', "missing_field:type"),
        (raw("request", request_id=DELETE), "missing_field:request_id"),
        (raw("request", request_id=""), "missing_field:request_id"),
        (raw("request", request_id=None), "missing_field:request_id"),
        (raw("request", request_id=42), "wrong_type:request_id"),
        (raw("request", request_id="x" * 129), "too_long:request_id"),
        (raw("request", requester__agency=""), "missing_field:requester.agency"),
        (raw("request", subject__name__last=DELETE), "missing_field:subject.name.last"),
        (raw("request", subject__address__zip=30301), "wrong_type:subject.address.zip"),
        (raw("request", submitted_at="2025-06-02T10:00:00"), "wrong_type:submitted_at"),
        (raw("request", submitted_at="yesterday"), "wrong_type:submitted_at"),
        (raw("request", legal_basis__removal_order="yes"), "wrong_type:legal_basis.removal_order"),
        (raw("request", legal_basis__tax_periods=["2024", 2023]), "wrong_type:legal_basis.tax_periods[1]"),
        (raw("response", match__status="maybe"), "invalid_value:match.status"),
        (raw("response", match__score=1.5), "out_of_range:match.score"),
        (raw("response", match=DELETE), "missing_field:match"),
        (raw("response", disclosed=["address"]), "wrong_type:disclosed"),
        (raw("disposal", disposed_at=DELETE), "missing_field:disposed_at"),
        (b'{"type":"response","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "oversized"),
        (b'{"type":"response","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "too_deep"),
        (b'{"type":"request","request_id":NaN}', "invalid_json"),
    ],
)
def test_invalid_events_get_specific_reasons(data: bytes, reason: str) -> None:
    result = decode(data)
    assert isinstance(result, Invalid)
    assert result.reason == reason


def test_size_limit_is_configurable() -> None:
    assert decode(raw("request"), max_bytes=100) == Invalid("oversized")


def test_disclosed_fields_ignore_empty_values() -> None:
    event = decode(raw("response", disclosed={"address": "", "name": None, "employer": {}, "income": 5}))
    assert isinstance(event, Response)
    assert disclosed_fields(event) == ("income",)


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    assert isinstance(decode(data), (Request, Response, Disposal, Invalid))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.sampled_from(["request", "response", "disposal"]),
    st.sampled_from(
        [
            "request_id",
            "agreement_id",
            "requester",
            "subject.name",
            "subject.address.zip",
            "match",
            "match.score",
            "disclosed",
            "legal_basis.tax_periods",
            "submitted_at",
            "responded_at",
        ]
    ),
    _json,
)
def test_any_value_in_any_field_gives_event_or_reason(kind: str, path: str, value: object) -> None:
    result = decode(raw(kind, **{path.replace(".", "__"): value}))
    if isinstance(result, Invalid):
        assert (result.reason and ":" in result.reason) or result.reason in {"invalid_json", "not_an_object"}
    else:
        assert result.request_id


def test_mutated_valid_events_never_crash() -> None:
    base = raw("response")
    for cut in range(len(base)):
        result = decode(base[:cut] + b"\x00" + base[cut + 1 :])
        assert isinstance(result, (Response, Invalid))
    assert orjson.loads(base)
