"""The event-time timer wheel: keys pop in due order, once, when the watermark reaches their bucket."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.core.join import TimerWheel


@given(st.lists(st.tuples(st.text("abcdef", min_size=1, max_size=3), st.integers(-5_000, 50_000)), max_size=80),
       st.lists(st.integers(-10_000, 60_000), max_size=6))  # fmt: skip
def test_keys_pop_in_due_order_once_each_and_only_when_due(
    timers: list[tuple[str, int]], watermarks: list[int]
) -> None:
    wheel = TimerWheel(resolution_ms=1000)
    buckets = [wheel.schedule(key, due) for key, due in timers]
    assert all(
        bucket >= due and bucket - due < 1000 and bucket % 1000 == 0
        for bucket, (_, due) in zip(buckets, timers, strict=True)
    )
    popped: list[tuple[int, str]] = []
    for watermark in sorted(watermarks):
        due = list(wheel.pop_due(watermark))
        assert all(bucket <= watermark for bucket, _ in due)
        assert wheel.next_due() is None or wheel.next_due() > watermark  # type: ignore[operator]
        popped.extend(due)
    popped.extend(wheel.pop_due(10**9))
    assert [b for b, _ in popped] == sorted(b for b, _ in popped)
    assert sorted(popped) == sorted(zip(buckets, (key for key, _ in timers), strict=True))
    assert len(wheel) == 0 and wheel.next_due() is None


def test_a_key_scheduled_twice_pops_twice_and_the_size_counts_both() -> None:
    wheel = TimerWheel(resolution_ms=500)
    wheel.schedule("r1", 1_200)
    wheel.schedule("r1", 1_400)
    wheel.schedule("r2", 3_000)
    assert len(wheel) == 3 and wheel.next_due() == 1_500
    assert list(wheel.pop_due(1_499)) == []
    assert list(wheel.pop_due(1_500)) == [(1_500, "r1"), (1_500, "r1")]
    assert len(wheel) == 1 and wheel.next_due() == 3_000
