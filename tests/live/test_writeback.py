"""The write-back join state: reads see writes at once; the table sees them only at flush."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.live.writeback import WriteBack


def test_reads_see_writes_and_deletes_before_the_flush() -> None:
    table = {"a": 1, "b": 2}
    store: WriteBack[int] = WriteBack(table)
    store["c"] = 3
    store["a"] = 10
    del store["b"]
    assert (store.get("a"), store.get("b"), store.get("c")) == (10, None, 3)
    assert table == {"a": 1, "b": 2}  # nothing durable yet
    assert sorted(store) == ["a", "c"] and len(store) == 2
    assert store.flush() == {"c": 3, "a": 10, "b": None}
    assert table == {"a": 10, "c": 3} and store.pending == 0


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.integers())), max_size=40),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(), max_size=6),
)
def test_a_flushed_writeback_equals_writing_straight_to_the_table(
    ops: list[tuple[str, int | None]], start: dict[str, int]
) -> None:
    direct, table = dict(start), dict(start)
    store: WriteBack[int] = WriteBack(table)
    for key, value in ops:
        if value is None:
            direct.pop(key, None)
            if key in store:
                del store[key]
        else:
            direct[key] = value
            store[key] = value
        assert dict(store.items()) == direct and len(store) == len(direct)
    store.flush()
    assert table == direct
