"""The worker's watermark over topic partitions, driven by a fake wall clock."""

from __future__ import annotations

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
