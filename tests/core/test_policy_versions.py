"""Agreement versions in force at event time: the policy check refuses overlaps and unmeant gaps, each
disclosure is judged by the version in force when it happened, a request's SLA by the version in force when it
was asked, every finding names the version it applied, and a reload that adds a future version changes nothing
before that version's start."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from monitor.core.detector import Detector
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.policy import parse_policy
from monitor.core.timeutil import parse_time_ms
from monitor.errors import PolicyError
from tests.conftest import TEST_KEY, request, response

V1 = """
[[agreement]]
id = "a1"
version = "v1"
requesters = ["ICE"]
disclosers = ["IRS"]
effective_from = 2025-01-01
effective_until = 2025-07-31
permitted_fields = ["address", "name"]
response_sla = "72h"
"""
V2 = """
[[agreement]]
id = "a1"
version = "v2 (court order)"
requesters = ["ICE"]
disclosers = ["IRS"]
effective_from = 2025-08-01
permitted_fields = ["address"]
response_sla = "24h"
"""


def _run(policy_text: str, events: Sequence[object], until: str | None = None) -> list[Finding]:
    detector = Detector(parse_policy(policy_text, "v.toml"), SubjectHasher(TEST_KEY), allowed_lateness_ms=0)
    found = [f for event in events for f in detector.process(event)]  # type: ignore[arg-type]
    return found + list(detector.advance_to(parse_time_ms(until))) if until else found


def _name_disclosed(request_id: str, at: str) -> list[object]:
    disclosed = {"address": {"street": "9 Elm Court", "city": "Atlanta", "state": "GA", "zip": "30302"},
                 "name": {"first": "Ana", "last": "Garcia"}}  # fmt: skip
    return [
        request(request_id=request_id, submitted_at=at),
        response(request_id=request_id, responded_at=at.replace("T10", "T11"), disclosed=disclosed),
    ]


def test_versions_are_found_by_time_and_an_overlap_or_gap_is_refused() -> None:
    policy = parse_policy(V2 + V1, "v.toml")  # in any order in the file
    assert policy.agreements["a1"].version == "v2 (court order)"
    assert policy.agreement_at("a1", parse_time_ms("2025-07-31T23:59:59Z")).version == "v1"  # type: ignore[union-attr]
    assert policy.agreement_at("a1", parse_time_ms("2025-08-01T00:00:00Z")).version == "v2 (court order)"  # type: ignore[union-attr]
    assert policy.agreement_at("a1", parse_time_ms("2024-06-01T00:00:00Z")).version == "v1"  # type: ignore[union-attr]
    with pytest.raises(PolicyError) as overlap:
        parse_policy(V1.replace("effective_until = 2025-07-31", "effective_until = 2025-08-15") + V2, "v.toml")
    assert "overlaps version 'v1'" in overlap.value.reason and overlap.value.where.endswith(".effective_from")
    assert "line 17:" in overlap.value.where  # v2's effective_from
    with pytest.raises(PolicyError) as gap:
        parse_policy(V1.replace("effective_until = 2025-07-31", "effective_until = 2025-07-15") + V2, "v.toml")
    assert "after_gap = true" in gap.value.reason
    meant = V1.replace("effective_until = 2025-07-31", "effective_until = 2025-07-15") + V2.replace(
        'permitted_fields = ["address"]', 'permitted_fields = ["address"]\nafter_gap = true'
    )
    assert parse_policy(meant, "v.toml").agreement_at("a1", parse_time_ms("2025-07-20T00:00:00Z")).version == "v1"  # type: ignore[union-attr]
    with pytest.raises(PolicyError) as unlabelled:
        parse_policy(V1.replace('version = "v1"\n', "") + V2, "v.toml")
    assert "give each version a 'version' label" in unlabelled.value.reason


def test_each_disclosure_is_judged_by_the_version_in_force_when_it_happened() -> None:
    events = _name_disclosed("before", "2025-07-30T10:00:00Z") + _name_disclosed("after", "2025-08-02T10:00:00Z")
    found = [f for f in _run(V1 + V2, events) if f.rule == "unpermitted_field"]
    assert [(f.request_id, f.details["policy_version"]) for f in found] == [("after", "v2 (court order)")]
    # A time in a gap is judged by the version that ended: outside its period.
    lapsed = V1.replace("effective_until = 2025-07-31", "effective_until = 2025-07-15") + V2.replace(
        'permitted_fields = ["address"]', 'permitted_fields = ["address"]\nafter_gap = true'
    )
    gap = _run(lapsed, _name_disclosed("gap", "2025-07-20T10:00:00Z"))
    assert {(f.rule, f.details["policy_version"]) for f in gap} >= {("outside_agreement_period", "v1")}


def test_a_requests_sla_is_that_of_the_version_in_force_when_it_was_asked() -> None:
    asked_before = [
        request(request_id="r1", submitted_at="2025-07-31T12:00:00Z"),
        response(request_id="r1", responded_at="2025-08-02T12:00:00Z", disclosed=None, match={"status": "no_match"}),
    ]  # 48 h: within v1's 72 h, past v2's 24 h
    asked_after = [
        request(request_id="r2", submitted_at="2025-08-03T12:00:00Z"),
        response(request_id="r2", responded_at="2025-08-05T12:00:00Z", disclosed=None, match={"status": "no_match"}),
    ]
    found = _run(V1 + V2, asked_before + asked_after, until="2025-08-10T00:00:00Z")
    breaches = [(f.request_id, f.details["policy_version"]) for f in found if f.rule == "response_sla_breach"]
    assert breaches == [("r2", "v2 (court order)")]


def test_a_reload_that_adds_a_future_version_changes_nothing_before_it_starts() -> None:
    today = V1.replace("effective_until = 2025-07-31\n", "")
    detector = Detector(parse_policy(today, "v.toml"), SubjectHasher(TEST_KEY), allowed_lateness_ms=0)
    found = [f for e in _name_disclosed("r1", "2025-07-01T10:00:00Z") for f in detector.process(e)]  # type: ignore[arg-type]
    detector.set_policy(parse_policy(V1 + V2, "v.toml"))  # SIGHUP: the court order from 1 August
    found += [f for e in _name_disclosed("r2", "2025-07-20T10:00:00Z") for f in detector.process(e)]  # type: ignore[arg-type]
    assert not [f for f in found if f.rule == "unpermitted_field"]
    found += [f for e in _name_disclosed("r3", "2025-08-01T10:00:00Z") for f in detector.process(e)]  # type: ignore[arg-type]
    assert [f.request_id for f in found if f.rule == "unpermitted_field"] == ["r3"]
    unversioned = _run(today, _name_disclosed("r4", "2025-07-01T10:00:00Z"))
    assert {f.details["policy_version"] for f in unversioned} <= {parse_policy(today, "v.toml").version}
