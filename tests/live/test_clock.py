"""The worker's watermark over topic partitions, driven by a fake wall clock."""

from __future__ import annotations

from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.live.clock import PartitionClock

LATE = 100


class Wall:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_the_slowest_partition_holds_the_watermark() -> None:
    wall = Wall()
    clock = PartitionClock(LATE, idle_ms=None, wall_ms=wall)
    clock.assign([("requests", 0), ("responses", 0)])
    clock.observe(("requests", 0), 10_000)
    assert clock.watermark() is None  # the responses partition has not been heard from
    clock.observe(("responses", 0), 1_000)
    assert clock.watermark() == 900
    clock.observe(("requests", 0), 50_000)
    assert clock.watermark() == 900  # a partition read far ahead does not make the other late
    clock.observe(("responses", 0), 2_000)
    assert clock.watermark() == 1_900


def test_an_idle_partition_stops_holding_and_a_quiet_stream_advances_with_the_wall_clock() -> None:
    wall = Wall()
    clock = PartitionClock(LATE, idle_ms=30_000, wall_ms=wall)
    clock.assign([("requests", 0), ("disposals", 0)])
    clock.observe(("disposals", 0), 1_000)
    clock.observe(("requests", 0), 5_000)
    assert clock.watermark() == 900
    wall.now = 20_000
    clock.observe(("requests", 0), 8_000)
    wall.now = 31_000  # disposals silent for 31 s: no longer holds the watermark back
    assert clock.watermark() == 7_900
    wall.now = 20_000 + 60_000  # everything silent for 60 s: the watermark moves with the wall clock
    assert clock.watermark() == 7_900 + 60_000


def test_the_watermark_never_moves_backwards() -> None:
    wall = Wall()
    clock = PartitionClock(LATE, idle_ms=None, wall_ms=wall)
    clock.observe(("requests", 0), 5_000)
    assert clock.watermark() == 4_900
    clock.assign([("requests", 0), ("requests", 1)])  # a rebalance hands over a partition that is behind
    clock.observe(("requests", 1), 1_000)
    assert clock.watermark() == 4_900


class Recomputed:
    """The watermark as the module's docstring defines it, worked out from every source at each call."""

    def __init__(self, allowed_lateness_ms: int, idle_ms: int | None) -> None:
        self.late, self.idle = allowed_lateness_ms, idle_ms
        self.newest: dict[str, int] = {}
        self.heard: dict[str, int] = {}
        self.assigned: set[str] = set()
        self.mark: int | None = None
        self.last_event: int | None = None

    def assign(self, sources: set[str]) -> None:
        self.assigned = set(sources)
        self.newest = {s: t for s, t in self.newest.items() if s in sources}
        self.heard = {s: t for s, t in self.heard.items() if s in sources}

    def observe(self, source: str, event_ms: int, now: int) -> None:
        self.assigned.add(source)
        self.newest[source] = max(event_ms, self.newest.get(source, event_ms))
        self.heard[source] = self.last_event = now

    def watermark(self, now: int) -> int | None:
        idle = self.idle
        active = [t for s, t in self.newest.items() if idle is None or now - self.heard[s] < idle]
        unheard = bool(self.assigned - set(self.newest))
        quiet = self.last_event is not None and idle is not None and now - self.last_event >= idle
        candidate = None
        if active and not (unheard and not quiet):
            candidate = min(active) - self.late
        elif not active and self.newest and idle is not None and self.last_event is not None:
            candidate = max(self.newest.values()) - self.late + now - self.last_event
        if candidate is not None and (self.mark is None or candidate > self.mark):
            self.mark = candidate
        return self.mark


SOURCES = st.sampled_from(["requests:0", "responses:0", "disposals:0", "requests:1"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), SOURCES, st.integers(0, 5_000)),
        st.tuples(st.just("wall"), st.integers(-50, 400)),
        st.tuples(st.just("assign"), st.sets(SOURCES)),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(steps=STEPS, idle_ms=st.sampled_from([None, 0, 50, 300]))
def test_the_kept_watermark_is_the_one_recomputed_from_every_source(
    steps: list[tuple[object, ...]], idle_ms: int | None
) -> None:
    """After every event, at the same or a later (or earlier) wall-clock time, the watermark kept between
    events is the one worked out afresh; event times come in any order."""
    wall = Wall()
    clock, reference = PartitionClock(LATE, idle_ms, wall), Recomputed(LATE, idle_ms)
    for step in steps:
        if step[0] == "observe":
            source, event_ms = cast(tuple[str, int], step[1:])
            clock.observe(source, event_ms, wall.now)
            reference.observe(source, event_ms, wall.now)
        elif step[0] == "wall":
            wall.now += cast(int, step[1])
        else:
            sources = cast(set[str], step[1])
            clock.assign(sources)
            reference.assign(sources)
        assert clock.watermark(wall.now) == reference.watermark(wall.now)
