"""A flood of distinct, never-matched request ids: state expires on the join window, and a cap refuses (and
counts) new ids instead of growing until the process is killed."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from monitor.core.detector import Detector
from monitor.core.events import Response
from monitor.core.findings import SubjectHasher
from monitor.core.policy import Policy
from monitor.core.timeutil import format_ms, parse_time_ms
from monitor.outputs.metrics import Metrics
from tests.conftest import TEST_KEY, build, raw, response, rules_of

START_MS = parse_time_ms("2025-06-01T00:00:00Z")


def _unmatched(count: int, every_ms: int) -> list[tuple[Response, int]]:
    """Non-disclosing answers to request ids nobody sent: each one opens join state."""
    template = orjson.loads(raw("response", match={"status": "no_match"}, disclosed=None))
    events = []
    for i in range(count):
        at = START_MS + i * every_ms
        event = build(template, {"request_id": f"flood-{i}", "responded_at": format_ms(at)})
        assert isinstance(event, Response)
        events.append((event, at))
    return events


def test_unmatched_ids_expire_on_the_join_window(policy: Policy) -> None:
    detector = Detector(policy, SubjectHasher(TEST_KEY), 60_000)
    every_ms = 30_000  # 60 days of a new id every 30 s: 172,800 ids, a join window (14 d) holds 40,320
    peak = 0
    for event, at in _unmatched(172_800, every_ms):
        assert not detector.process(event, at)
        peak = max(peak, len(detector.store))
    window_ids = 14 * 86_400_000 // every_ms
    assert window_ids <= peak <= window_ids + 200  # the window, plus lateness and timer granularity
    assert len(detector.store) <= window_ids + 200
    assert len(detector.timers) <= window_ids + 200


def test_a_capped_join_state_refuses_new_ids_counts_them_and_still_judges_disclosures(policy: Policy) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, policy)
    detector = Detector(policy, SubjectHasher(TEST_KEY), 60_000, observer=metrics, max_entries=10_000)
    metrics.track_state(detector.pending, lambda: detector.watermark_ms, cache_s=0, capacity=10_000)
    for event, at in _unmatched(50_000, 1_000):
        detector.process(event, at)
    assert len(detector.store) == 10_000
    assert detector.stats.refused == 40_000
    assert registry.get_sample_value("dismon_join_refused_total") == 40_000
    assert registry.get_sample_value("dismon_join_capacity") == 10_000
    # Past the cap, a disclosure under a court order (a rule that needs no join) is still caught.
    late = response(request_id="unseen", responded_at=format_ms(START_MS + 50_000_000), disclosed={"employer": "Acme"})
    assert "restricted_disclosure" in rules_of(list(detector.process(late)))
