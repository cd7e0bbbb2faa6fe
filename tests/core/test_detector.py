"""Order independence of the whole detector, property-based: any arrival order within the allowed
lateness gives the same set of alert ids; later-than-lateness events are counted, never lost."""

from __future__ import annotations

import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.detector import Detector
from monitor.core.events import Event, decode
from monitor.core.findings import SubjectHasher
from monitor.core.policy import parse_policy
from monitor.core.timeutil import parse_time_ms
from monitor.simulate import iter_events
from monitor.simulate.policies import default_policy
from monitor.simulate.scenario import FAULTS, plan_default
from tests.conftest import TEST_KEY

START = parse_time_ms("2025-06-02")
LATENESS_MS = 10 * 60_000
PLAN = plan_default(7, 400, START, 5, list(FAULTS), START + 86_400_000, 0.05)
EVENTS: list[tuple[int, Event]] = []
for _at, document in iter_events(PLAN, 0):
    event = decode(orjson.dumps(document))
    assert not isinstance(event, str)
    EVENTS.append((_at, event))  # type: ignore[arg-type]
POLICY = parse_policy(default_policy(START), "sim.toml")
UNTIL = max(at for at, _ in EVENTS) + 8 * 86_400_000


def _alert_ids(order: list[tuple[int, Event]]) -> set[str]:
    detector = Detector(POLICY, SubjectHasher(TEST_KEY), LATENESS_MS)
    found = {f.alert_id for _, e in order for f in detector.process(e)}
    found |= {f.alert_id for f in detector.advance_to(UNTIL)}
    return found


BASELINE = _alert_ids(EVENTS)


def test_baseline_covers_every_fault() -> None:
    detector = Detector(POLICY, SubjectHasher(TEST_KEY), LATENESS_MS)
    rules = {f.rule for _, e in EVENTS for f in detector.process(e)} | {f.rule for f in detector.advance_to(UNTIL)}
    assert rules == {rule for fault in FAULTS for rule in FAULTS[fault]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(0, LATENESS_MS))
def test_any_order_within_lateness_gives_same_alerts(seed: int, disorder_ms: int) -> None:
    rng = random.Random(seed)
    # Arrival order: event time plus a random delay below the bound, so no event is later than the lateness.
    shuffled = sorted(EVENTS, key=lambda item: item[0] + rng.randrange(disorder_ms + 1))
    assert _alert_ids(shuffled) == BASELINE


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32))
def test_very_late_events_are_counted_and_processed(seed: int) -> None:
    rng = random.Random(seed)
    delayed = rng.sample(range(len(EVENTS)), 5)
    order = [item for i, item in enumerate(EVENTS) if i not in delayed] + [EVENTS[i] for i in delayed]
    detector = Detector(POLICY, SubjectHasher(TEST_KEY), LATENESS_MS)
    for _, event in order:
        detector.process(event)
    assert sum(detector.stats.events.values()) == len(EVENTS)
    assert detector.stats.late_events >= 1


def test_alert_ids_are_stable_across_keys_and_runs() -> None:
    other = Detector(POLICY, SubjectHasher(b"another-key-of-enough-length"), LATENESS_MS)
    found = {f.alert_id for _, e in EVENTS for f in other.process(e)} | {f.alert_id for f in other.advance_to(UNTIL)}
    assert found == BASELINE
