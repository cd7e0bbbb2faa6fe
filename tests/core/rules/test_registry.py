"""The registry covers every rule of SPEC §4, each with one stable id and a severity."""

from __future__ import annotations

from monitor.core.rules import RULES

SPEC_RULES = {
    "incomplete_request_disclosure",
    "missing_legal_basis_disclosure",
    "weak_match_disclosure",
    "unpermitted_field",
    "restricted_disclosure",
    "outside_agreement_period",
    "unauthorized_party",
    "subject_mismatch",
    "orphan_disclosure",
    "duplicate_disclosure",
    "response_sla_breach",
    "disposal_overdue",
    "daily_cap_exceeded",
    "oversized_batch",
    "disclosure_rate_spike",
    "disclosure_ratio_drift",
}


def test_every_rule_is_registered_once_with_a_severity() -> None:
    assert set(RULES) == SPEC_RULES
    assert {rule.severity for rule in RULES.values()} <= {"critical", "warning", "info"}
    assert all(type(rule).__name__.lower() == rule_id.replace("_", "") for rule_id, rule in RULES.items())
