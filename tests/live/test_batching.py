"""How fetched records reach the worker: in the order Faust's scheduler would hand them to streams."""

from __future__ import annotations

from dataclasses import dataclass

from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from monitor.live.faust.batching import round_robin


@dataclass(frozen=True)
class _Record:
    topic: str
    partition: int
    offset: int


FETCHES = st.dictionaries(
    st.builds(TP, st.sampled_from(["t.requests", "t.responses", "t.disposals"]), st.integers(0, 3)),
    st.integers(1, 6),
    max_size=12,
)


@given(fetch=FETCHES)
def test_records_come_in_the_order_fausts_scheduler_gives(fetch: dict[TP, int]) -> None:
    records = {tp: [_Record(tp.topic, tp.partition, offset) for offset in range(count)] for tp, count in fetch.items()}
    scheduler = DefaultSchedulingStrategy()  # type: ignore[abstract]  # faust-streaming's stubs mark __init__ so
    assert round_robin(records) == [record for _tp, record in scheduler.iterate(records)]
