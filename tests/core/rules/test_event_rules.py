"""Rules judged on one event: restrictions, the agreement period, the parties."""

from __future__ import annotations

from monitor.core.detector import Detector
from tests.conftest import request, response, rules_of, run


def test_restricted_disclosure_while_order_in_force(detector: Detector) -> None:
    findings = run(detector, [request(), response(disclosed__employer="Acme")])
    assert rules_of(findings) == ["restricted_disclosure"]
    assert findings[0].details["restricted_fields"] == ["employer"]


def test_restricted_field_before_the_order_is_fine(detector: Detector) -> None:
    early = [
        request(submitted_at="2025-05-02T10:00:00Z"),
        response(responded_at="2025-05-02T12:00:00Z", disclosed__employer="Acme"),
    ]
    assert run(detector, early) == []


def test_outside_agreement_period_before_and_after(detector: Detector) -> None:
    before = [
        request(request_id="b", submitted_at="2025-03-01T10:00:00Z"),
        response(request_id="b", responded_at="2025-03-01T12:00:00Z"),
    ]
    after = [
        request(request_id="c", submitted_at="2026-04-07T10:00:00Z"),
        response(request_id="c", responded_at="2026-04-07T12:00:00Z"),
    ]
    # A year passes between the two: the first, improper and never disposed of, is also overdue.
    assert rules_of(run(detector, before + after)) == ["disposal_overdue"] + ["outside_agreement_period"] * 2


def test_last_day_of_agreement_is_inside(detector: Detector) -> None:
    last_day = [request(submitted_at="2026-04-06T10:00:00Z"), response(responded_at="2026-04-06T23:59:59Z")]
    assert run(detector, last_day) == []


def test_unauthorized_signatory_and_requester(detector: Detector) -> None:
    events = [
        request(request_id="s", requester__signatory="Field Clerk"),
        request(request_id="t", requester__agency="CBP"),
        request(request_id="u", agreement_id="nope"),
    ]
    findings = run(detector, events)
    assert rules_of(findings) == ["unauthorized_party"] * 3
    assert sorted(f.details["problem"] for f in findings) == [
        "requester_not_party",
        "signatory_not_authorized",
        "unknown_agreement",
    ]


def test_discloser_not_party(detector: Detector) -> None:
    findings = run(detector, [request(), response(responder__agency="SSA")])
    assert rules_of(findings) == ["unauthorized_party"]
    assert findings[0].details["problem"] == "discloser_not_party"
