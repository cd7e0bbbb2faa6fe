"""The policy loader: a valid file becomes frozen dataclasses; a broken one is refused with file, line, key, reason."""

from __future__ import annotations

import dataclasses

import pytest

from monitor.config import load_policy
from monitor.core.policy import parse_policy
from monitor.core.timeutil import parse_time_ms
from monitor.errors import PolicyError
from tests.conftest import POLICY_TOML


def test_valid_policy(tmp_path: object) -> None:
    policy = parse_policy(POLICY_TOML, "p.toml")
    agreement = policy.agreements["a1"]
    assert agreement.response_sla_ms == 72 * 3600 * 1000
    assert agreement.join_window_ms == 14 * 86_400_000
    assert agreement.identifying_fields[0] == "subject.name.last"
    assert agreement.legal_basis_fields == ("legal_basis.statute", "legal_basis.case_id", "legal_basis.removal_order")
    assert agreement.effective_until_ms == parse_time_ms("2026-04-07")  # the whole last day is inside
    assert agreement.placeholder_values == frozenset({"on record"})
    assert agreement.restrictions[0].forbids("employer", parse_time_ms("2025-06-01"), "ICE")
    assert not agreement.restrictions[0].forbids("address", parse_time_ms("2025-06-01"), "ICE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        agreement.permitted_fields = frozenset()  # type: ignore[misc]


def _broken(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "broken.toml")
    return caught.value


MINIMAL = 'id = "x"\nrequesters = ["A"]\ndisclosers = ["B"]\neffective_from = 2025-01-01\n'


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        ('response_sla = "3 days"\n', "line 7: agreement[0] (x).response_sla", "not a duration"),
        ('permited_fields = ["address"]\n', "line 7: agreement[0].permited_fields", "unknown key"),
        ('required_request_fields = ["subject.adress.zip"]\n', "line 7", "unknown request field"),
        ("max_disclosures_per_day = -5\n", "line 7", "positive integer"),
        ('required_match = { status = "perhaps" }\n', "required_match.status", "must be one of"),
        ("required_match = { min_score = 2 }\n", "required_match.min_score", "between 0 and 1"),
        ("effective_until = 2024-01-01\n", "effective_until", "after effective_from"),
        ('orphan_grace = "30d"\n', "orphan_grace", "shorter than join_window"),
        (
            '[[agreement.restriction]]\nfields = ["address"]\n',
            "line 7: agreement[0] (x).restriction[0].from",
            "required",
        ),
        ('join_window = "99999999999999999999d"\n', "line 7: agreement[0] (x).join_window", "at most 3650d"),
        (
            '[[agreement.restriction]]\nfields = ["address"]\nfrom = 2025-05-01\nrequesters = []\nreason = "order"\n',
            "line 10: agreement[0] (x).restriction[0].requesters",
            "leave the key out to mean every one",
        ),
    ],
)
def test_broken_policies_name_line_key_and_reason(body: str, where: str, reason: str) -> None:
    error = _broken("\n[[agreement]]\n" + MINIMAL + body)
    assert error.path == "broken.toml"
    assert where in error.where
    assert reason in error.reason


def test_syntax_error_names_the_line() -> None:
    error = _broken('[[agreement]]\nid = "x"\nrequesters = = ["A"]\n')
    assert error.where == "syntax" and "line 3" in error.reason


def test_missing_required_key() -> None:
    error = _broken('[[agreement]]\nid = "x"\n')
    assert "requesters" in error.where and "required" in error.reason


def test_an_agreement_names_its_parties() -> None:
    for key in ("requesters", "disclosers"):
        error = _broken("[[agreement]]\n" + MINIMAL.replace(f'{key} = ["', f'{key} = []\n# ["'))
        assert error.where.endswith(f"agreement[0] (x).{key}") and error.reason == "must name at least one agency"


def test_duplicate_agreement_ids() -> None:
    error = _broken(f"[[agreement]]\n{MINIMAL}[[agreement]]\n{MINIMAL}")
    assert "duplicate agreement id" in error.reason


def test_the_canary_agreement_is_reserved() -> None:
    error = _broken("[[agreement]]\n" + MINIMAL.replace('id = "x"', 'id = "dismon-canary"'))
    assert error.where.endswith(".id") and "reserved for the canary" in error.reason


def test_empty_file_defines_nothing() -> None:
    assert "no [[agreement]]" in _broken("").reason


def test_unreadable_files(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(PolicyError, match="No such file"):
        load_policy("/nonexistent/policy.toml")
    path = tmp_path / "latin1.toml"  # type: ignore[operator]
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(PolicyError, match="not valid UTF-8"):
        load_policy(str(path))


def test_the_anomaly_rules_are_on_unless_an_agreement_turns_them_off() -> None:
    on = parse_policy(f"[[agreement]]\n{MINIMAL}", "p.toml").agreements["x"]
    assert on.rate_spike is not None and on.ratio_drift is not None  # defaults, without a word
    tuned = parse_policy(f"[[agreement]]\n{MINIMAL}rate_spike = {{ factor = 6.0 }}\nratio_drift = true\n", "p.toml")
    assert tuned.agreements["x"].rate_spike.factor == 6.0  # type: ignore[union-attr]
    assert tuned.agreements["x"].ratio_drift is not None
    off = parse_policy(f"[[agreement]]\n{MINIMAL}rate_spike = false\nratio_drift = false\n", "p.toml")
    assert off.agreements["x"].rate_spike is None and off.agreements["x"].ratio_drift is None
    error = _broken(f'[[agreement]]\n{MINIMAL}rate_spike = "off"\n')
    assert error.where.endswith("rate_spike") and "false turns a rule off" in error.reason
