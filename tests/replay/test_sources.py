"""Reading logs: line splitting over arbitrary chunking, gzip (multi-member, truncated), reordering."""

from __future__ import annotations

import gzip
import heapq
import os
import random
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.timeutil import format_ms, parse_time_ms
from monitor.errors import InputError
from monitor.replay.sources import (
    _PIECE_BYTES,
    ReadOptions,
    _chunks,
    decode_lines,
    merged_events,
    open_lines,
    reorder,
    split_lines,
)
from tests.conftest import raw


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30), st.data())
def test_split_lines_is_independent_of_chunking(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"\n".join(lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=8)))
    chunks = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=False)]
    expected = blob.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert list(split_lines(chunks)) == expected


def test_over_long_line_is_cut_and_the_rest_survive() -> None:
    blob = b"a\n" + b"x" * 100 + b"\nb\n"
    chunks = [blob[i : i + 7] for i in range(0, len(blob), 7)]
    assert list(split_lines(chunks, max_line_bytes=10)) == [b"a", b"x" * 11, b"b"]


def test_gzip_multi_member_and_plain(tmp_path: Path) -> None:
    gz = tmp_path / "log.jsonl.gz"
    gz.write_bytes(gzip.compress(b"one\ntwo\n") + gzip.compress(b"three\n"))
    plain = tmp_path / "log.jsonl"
    plain.write_bytes(b"one\ntwo\nthree")
    assert list(open_lines(str(gz))) == list(open_lines(str(plain))) == [b"one", b"two", b"three"]


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b"x" * 10_000 + b"\n" * 100)[:-30])
    with pytest.raises(InputError, match="truncated"):
        list(open_lines(str(path)))


@given(st.integers(0, 2**32), st.integers(0, 50))
def test_reorder_sorts_bounded_disorder(seed: int, bound: int) -> None:
    rng = random.Random(seed)
    times = sorted(rng.randrange(1000) for _ in range(200))
    arrivals = sorted(((t, i, None) for i, t in enumerate(times)), key=lambda x: x[0] + rng.randrange(bound + 1))
    out = [t for t, _, _ in reorder(arrivals, bound)]
    assert out == sorted(out) and len(out) == len(times)


def _heap_reorder(stream: list[tuple[int, int]], bound: int) -> Iterator[tuple[int, int]]:
    """The reference: push each item, then pop everything behind the horizon."""
    heap: list[tuple[int, int]] = []
    newest = None
    for item in stream:
        heapq.heappush(heap, item)
        newest = item[0] if newest is None else max(newest, item[0])
        while heap[0][0] < newest - bound:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)


@given(st.lists(st.integers(0, 100), max_size=300), st.integers(0, 30), st.integers(0, 2**32), st.integers(1, 64))
def test_reorder_releases_exactly_what_a_heap_would_in_its_order(
    times: list[int], bound: int, seed: int, release_batch: int
) -> None:
    # Arbitrary disorder: most of it within the bound, some of it far beyond (late items), many ties.
    rng = random.Random(seed)
    stream = sorted(((t, i) for i, t in enumerate(times)), key=lambda x: x[0] + rng.randrange(2 * bound + 1))
    stream = [(t, i) for i, (t, _) in enumerate(stream)]  # arrival numbers, as decode_lines gives
    assert list(reorder(stream, bound, release_batch)) == list(_heap_reorder(stream, bound))


def test_reorder_holds_long_streams_in_runs_not_all_at_once() -> None:
    stream = [(t, t) for t in range(100_000)]
    released_before_the_end = 0
    for released_before_the_end, _ in enumerate(reorder(stream, 10)):
        if released_before_the_end == 50_000:
            break
    assert released_before_the_end == 50_000  # a release happened long before the stream ended


def test_a_gzip_bomb_is_inflated_in_bounded_pieces(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(b"\0" * (64 << 20), compresslevel=9))  # 64 MiB from about 64 KiB
    with open(path, "rb") as raw:
        sizes = [len(piece) for piece in _chunks(raw, True, str(path))]
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= _PIECE_BYTES < 64 << 20


def test_inflating_in_pieces_gives_the_same_bytes_across_members(tmp_path: Path) -> None:
    rng = random.Random(7)
    block = bytes(rng.choice(b"ab\n") for _ in range(10_000))
    members = [block[:10], block * 2_000, b"", block[:3]]  # the second inflates 20 MB from well under 1 MB
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(b"".join(gzip.compress(m) for m in members))
    assert path.stat().st_size < 1 << 20
    with open(path, "rb") as raw:
        assert b"".join(_chunks(raw, True, str(path))) == b"".join(members)


def test_stopping_early_stops_the_reading_thread_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(b"line\n" * 2_000_000))
    lines = open_lines(str(path))
    assert next(lines) == b"line"
    lines.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "dismon-read"]


def _request_lines(times: list[int], tag: str) -> bytes:
    return b"".join(
        raw("request", request_id=f"{tag}-{i}", submitted_at=format_ms(at)) + b"\n" for i, at in enumerate(times)
    )


def _merged(paths: list[str], bound_ms: int) -> Iterator[tuple[int, str]]:
    for event_ms, _seq, event in merged_events(paths, lambda letter: None, ReadOptions(bound_ms)):
        yield event_ms, event.request_id


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(1, 40), st.booleans()), min_size=2, max_size=6),
    st.integers(0, 2**32),
)
def test_merging_files_as_they_are_reached_gives_the_order_of_merging_them_all_at_once(
    files: list[tuple[int, int, bool]], seed: int
) -> None:
    rng, bound = random.Random(seed), 5 * 60_000
    base = parse_time_ms("2025-06-02T00:00:00Z")
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for number, (start_minute, count, junk_first) in enumerate(files):
            times = [base + (start_minute + i) * 60_000 for i in range(count)]
            times.sort(key=lambda at: at + rng.randrange(bound))  # disorder within the bound
            path = Path(directory) / f"p{number}.jsonl"
            path.write_bytes((b"{broken\n" if junk_first else b"") + _request_lines(times, f"f{number}"))
            paths.append(str(path))
        streams = [reorder(decode_lines(open_lines(path), path, lambda letter: None), bound) for path in paths]
        everything_open = [(item[0], item[2].request_id) for item in heapq.merge(*streams, key=lambda i: i[0])]
        assert list(_merged(paths, bound)) == everything_open


def test_files_that_follow_each_other_in_time_are_read_one_or_two_at_a_time(tmp_path: Path) -> None:
    """A year of daily dumps must not hold every file (and its read-ahead buffers) open for the whole replay."""
    paths, day = [], 86_400_000
    base = parse_time_ms("2025-01-01T00:00:00Z")
    for number in range(12):  # more events per file than the reorder buffer releases at once
        times = [base + number * day + i * 10_000 for i in range(5_000)]
        path = tmp_path / f"day-{number:02d}.jsonl.gz"
        path.write_bytes(gzip.compress(_request_lines(times, f"d{number}"), compresslevel=1))
        paths.append(str(path))

    def open_inputs() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd).startswith(str(tmp_path)))

    most, count, previous = 0, 0, -1
    for count, (event_ms, _id) in enumerate(_merged(list(reversed(paths)), 600_000), 1):
        assert event_ms >= previous
        previous = event_ms
        if count % 500 == 0:
            most = max(most, open_inputs())
    assert count == 60_000
    assert 1 <= most <= 2
