"""Window counts against a brute-force count, in any arrival order, and across a snapshot and restore."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.windows.counts import WindowCounts

_events = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 10_000)), max_size=60)
_shapes = st.sampled_from([(1000, None), (1000, 250), (3000, 1000), (500, 500)])


def _brute_force(events: list[tuple[str, int]], size: int, hop: int) -> dict[tuple[str, int], int]:
    """Every window [start, start + size) on the hop grid, counted event by event."""
    expected: dict[tuple[str, int], int] = {}
    for key, at in events:
        for start in range(at - at % hop - size + hop, at + 1, hop):
            if start <= at < start + size:
                expected[key, start] = expected.get((key, start), 0) + 1
    return expected


@settings(max_examples=200)
@given(_events, _shapes, st.randoms(use_true_random=False))
def test_closed_windows_hold_exactly_the_events_inside_them_in_any_order(
    events: list[tuple[str, int]], shape: tuple[int, int | None], rng: random.Random
) -> None:
    size, hop = shape
    counts: WindowCounts[str] = WindowCounts(size, hop)
    shuffled = events[:]
    rng.shuffle(shuffled)
    for key, at in shuffled:
        counts.add(key, at)
    closed = list(counts.close(20_000))
    assert {(key, start): values[0] for key, start, values in closed} == _brute_force(events, size, hop or size)
    assert [(start + size) for _k, start, _v in closed] == sorted(start + size for _k, start, _v in closed)
    assert len(counts) == 0 and counts.late_additions == 0


@given(_events, _events)
def test_a_restored_snapshot_counts_on_as_the_original(
    first: list[tuple[str, int]], then: list[tuple[str, int]]
) -> None:
    original: WindowCounts[str] = WindowCounts(3000, 1000, fields=2)
    for key, at in first:
        original.add(key, at, field=at % 2)
    copy = WindowCounts.restore(original.snapshot())
    for counts in (original, copy):
        for key, at in then:
            counts.add(key, at + 10_000, field=1)
    assert list(original.close(30_000)) == list(copy.close(30_000))


def test_an_addition_to_a_closed_window_is_refused_and_counted() -> None:
    counts: WindowCounts[str] = WindowCounts(1000, 500)
    counts.add("a", 100)
    assert [(k, s, v) for k, s, v in counts.close(1000)] == [("a", -500, [1]), ("a", 0, [1])]
    counts.add("a", 200)  # both its windows closed at 500 and 1000
    assert counts.late_additions == 2 and len(counts) == 0
    counts.add("a", 900)  # [500, 1500) is still open
    assert counts.late_additions == 3 and counts.peek("a", 900) == [1]
    assert counts.next_close_ms() == 1500


@pytest.mark.parametrize(("size", "hop"), [(0, None), (1000, 300), (1000, 0), (-5, -5)])
def test_a_window_must_be_a_positive_multiple_of_its_hop(size: int, hop: int | None) -> None:
    with pytest.raises(ValueError, match="positive multiple"):
        WindowCounts(size, hop)
