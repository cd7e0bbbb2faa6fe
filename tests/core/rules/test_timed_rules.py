"""Rules driven by the watermark: orphans, the response SLA, disposal deadlines; and state expiry."""

from __future__ import annotations

from monitor.core.detector import Detector
from tests.conftest import DELETE, disposal, request, response, rules_of, run


def test_orphan_fires_after_grace_and_not_before(detector: Detector) -> None:
    assert run(detector, [response()], until="2025-06-02T12:59:00Z") == []
    findings = run(detector, [], until="2025-06-02T13:00:01Z")
    assert rules_of(findings) == ["orphan_disclosure"]


def test_request_arriving_within_grace_is_no_orphan(detector: Detector) -> None:
    assert run(detector, [response(), request()], until="2025-06-02T14:00:00Z") == []


def test_orphan_without_disclosure_is_fine(detector: Detector) -> None:
    assert run(detector, [response(disclosed=DELETE, match={"status": "no_match"})], until="2025-06-09T00:00:00Z") == []


def test_late_request_after_orphan_still_checked(detector: Detector) -> None:
    findings = run(detector, [response()], until="2025-06-02T14:00:00Z")
    findings += run(detector, [request(subject__address__zip="12345")])
    assert rules_of(findings) == ["incomplete_request_disclosure", "orphan_disclosure"]
    assert detector.stats.late_events == 1


def test_sla_breach_fires_at_deadline(detector: Detector) -> None:
    assert run(detector, [request()], until="2025-06-05T09:59:00Z") == []
    findings = run(detector, [], until="2025-06-05T10:00:01Z")
    assert rules_of(findings) == ["response_sla_breach"]
    assert findings[0].severity == "warning"


def test_answer_within_sla_is_fine_and_late_answer_still_breaches(detector: Detector) -> None:
    on_time = [request(request_id="a"), response(request_id="a", responded_at="2025-06-05T09:00:00Z")]
    late = [request(request_id="b"), response(request_id="b", responded_at="2025-06-05T11:00:00Z")]
    findings = run(detector, on_time + late, until="2025-06-06T00:00:00Z")
    assert [(f.rule, f.request_id) for f in findings] == [("response_sla_breach", "b")]


def test_disposal_overdue_for_improper_disclosure(detector: Detector) -> None:
    events = [request(subject__address__street="unknown"), response()]
    findings = run(detector, events, until="2025-06-09T11:59:00Z")
    assert rules_of(findings) == ["incomplete_request_disclosure"]
    assert rules_of(run(detector, [], until="2025-06-09T12:00:01Z")) == ["disposal_overdue"]


def test_disposal_in_time_even_if_it_arrives_first(detector: Detector) -> None:
    events = [disposal(disposed_at="2025-06-04T00:00:00Z"), request(subject__address__street="unknown"), response()]
    assert rules_of(run(detector, events, until="2025-06-20T00:00:00Z")) == ["incomplete_request_disclosure"]


def test_disposal_before_the_disclosure_does_not_count(detector: Detector) -> None:
    events = [request(subject__address__street="unknown"), disposal(disposed_at="2025-06-02T11:00:00Z"), response()]
    assert rules_of(run(detector, events, until="2025-06-20T00:00:00Z")) == [
        "disposal_overdue",
        "incomplete_request_disclosure",
    ]


def test_proper_disclosure_owes_no_disposal(detector: Detector) -> None:
    assert run(detector, [request(), response()], until="2025-07-01T00:00:00Z") == []


def test_state_is_dropped_after_the_join_window(detector: Detector) -> None:
    run(detector, [request(request_id=f"r{i}", submitted_at="2025-06-02T10:00:00Z") for i in range(50)])
    run(detector, [response(request_id=f"r{i}") for i in range(50)])
    assert len(detector.store) == 50
    run(detector, [], until="2025-06-16T09:00:00Z")
    assert len(detector.store) == 50  # inside the 14-day window
    run(detector, [], until="2025-06-16T10:00:02Z")
    assert len(detector.store) == 0
    assert len(detector.timers) == 0
