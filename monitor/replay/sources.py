"""Reading historical event logs: JSON Lines files (optionally gzip), or stdin, merged in event-time order.

Each file is read as a stream and put through a small reorder buffer bounded
in event time (``max_disorder_ms``): logs dumped from several partitions are
each roughly in order, so this sorts them without loading a whole log.
The per-file streams are then merged by event time, each file opened only
when the merge gets near its first event (a year of daily files is read a
day or two at a time). An event more out of order than the bound passes
through as it is; the detector counts it as late and still processes it.
"""

from __future__ import annotations

import bisect
import heapq
import io
import math
import operator
import os
import sys
import threading
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any, BinaryIO, TypeVar

from monitor.core.events import DEFAULT_MAX_EVENT_BYTES, Event, Invalid, decode_timed
from monitor.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that could not be used: why and where (never its content)."""

    reason: str
    source: str
    line: int

    @property
    def where(self) -> dict[str, object]:
        return {"source": self.source, "line": self.line}


T = TypeVar("T", bound=tuple[Any, ...])  # (event time ms, arrival sequence, event[, raw line])


class ByteCounter:
    """Bytes consumed from the raw (possibly compressed) inputs, for progress reporting."""

    def __init__(self) -> None:
        self._handles: list[BinaryIO] = []
        self._finished = 0  # bytes of inputs read to the end and closed
        self.elsewhere = 0  # bytes consumed by a reading process (monitor.replay.read_ahead) for this counter

    def add(self, handle: BinaryIO) -> None:
        self._handles.append(handle)

    def finish(self, handle: BinaryIO) -> None:
        """``handle`` is about to close: keep what was read of it."""
        if handle in self._handles:
            self._finished += _position(handle)
            self._handles.remove(handle)

    def consumed(self) -> int:
        return self.elsewhere + self._finished + sum(_position(handle) for handle in self._handles)


def _position(handle: BinaryIO) -> int:
    try:
        return handle.tell()
    except (OSError, ValueError):
        return 0


_CHUNK_BYTES = 1 << 20
#: A line longer than this is cut here (and then dead-lettered as oversized) so memory stays bounded.
MAX_LINE_BYTES = 16 << 20


def _chunks(raw: BinaryIO, gzipped: bool, path: str) -> Iterator[bytes]:
    """Decompressed chunks of at most ``_PIECE_BYTES`` (a gzip bomb cannot blow up memory);
    concatenated gzip members are read one after the other."""
    if not gzipped:
        while chunk := raw.read(_CHUNK_BYTES):
            yield chunk
        return
    decompressor = zlib.decompressobj(wbits=31)
    fed = False  # the current member has had input
    data, exhausted = b"", False
    while True:
        if not data and not exhausted:
            data = raw.read(_CHUNK_BYTES)
            exhausted = not data
        fed = fed or bool(data)
        try:
            piece = decompressor.decompress(data, _PIECE_BYTES)
        except zlib.error as exc:
            raise InputError(f"{path}: corrupt gzip data: {exc}") from exc
        if piece:
            yield piece
        if decompressor.eof:
            data, decompressor, fed = decompressor.unused_data, zlib.decompressobj(wbits=31), False
        else:
            data = decompressor.unconsumed_tail
            if exhausted and not data and not piece:
                break
    if fed:
        raise InputError(f"{path}: gzip stream is truncated")


#: Inflated bytes per piece, and pieces a file's reading thread holds ready: enough to keep inflating on one
#: core while the replay decodes on the other (8 MiB and 4 ahead were no faster), and little enough that a
#: log in a dozen partition files, all open at once, does not hold a copy of itself (878 MiB peak then,
#: 626 MiB now, for 1.28 million events in 12 files; bench/replay_bench.py moves by less than its noise).
_PIECE_BYTES = 2 << 20
_PIECES_AHEAD = 2


def prefetched(chunks: Iterator[bytes], depth: int = 4) -> Generator[bytes, None, None]:
    """``chunks`` made by a background thread, up to ``depth`` ahead. zlib inflates without holding the
    GIL, so a replay decompresses on one core while it decodes and detects on another; a pipe is read
    without it too (monitor.replay.read_ahead)."""
    queue: Queue[bytes | BaseException | None] = Queue(depth)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
        except BaseException as exc:  # handed to the reader, which raises it as its own
            put(exc)
            return
        put(None)

    thread = threading.Thread(target=produce, name="dismon-read", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def split_lines(chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines (without the newline) of a stream of chunks; an over-long line is cut to ``max_line_bytes + 1``."""
    pending = b""
    skipping = False  # inside an over-long line that was already yielded cut
    for chunk in chunks:
        if not chunk:
            continue
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        if skipping and parts:
            parts.pop(0)
            skipping = False
        yield from parts
        if len(pending) > max_line_bytes and not skipping:
            yield pending[: max_line_bytes + 1]
            skipping, pending = True, b""
        elif skipping:
            pending = b""
    if pending and not skipping:
        yield pending


def open_lines(path: str, counter: ByteCounter | None = None) -> Iterator[bytes]:
    """Lines of a ``.jsonl`` / ``.jsonl.gz`` file or of stdin (``-``); gzip is recognised by its magic bytes."""
    try:
        raw: io.BufferedReader = sys.stdin.buffer if path == "-" else open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115 (closed in finally)
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror}") from exc
    chunks: Generator[bytes, None, None] | None = None
    try:
        if counter is not None and path != "-":
            counter.add(raw)
        chunks = prefetched(_chunks(raw, raw.peek(2)[:2] == _GZIP_MAGIC, path), _PIECES_AHEAD)
        yield from split_lines(chunks)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    finally:
        if chunks is not None:
            chunks.close()  # stops the reading thread before the file closes
        if path != "-":
            if counter is not None:
                counter.finish(raw)
            raw.close()


def decode_lines(
    lines: Iterable[bytes],
    source: str,
    on_invalid: Callable[[DeadLetter], None],
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    keep_raw: bool = False,
    not_after_ms: int | None = None,
    reduce: Callable[[Event, int], Any] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Decode lines into ``(event_ms, seq, event)`` (plus the line with ``keep_raw``), the event replaced by
    ``reduce(event, event_ms)`` when given; invalid ones go to ``on_invalid``. Blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        decoded = decode_timed(line, max_event_bytes, not_after_ms)
        if isinstance(decoded, Invalid):
            if line.strip():
                on_invalid(DeadLetter(decoded.reason, source, number))
            continue
        event_ms, event = decoded
        item = event if reduce is None else reduce(event, event_ms)
        if keep_raw:
            yield event_ms, number, item, line
        else:
            yield event_ms, number, item


def reorder(stream: Iterable[T], max_disorder_ms: int, release_batch: int = 4096) -> Iterator[T]:
    """Sort a stream whose disorder is bounded by ``max_disorder_ms`` of event time, holding only that much.

    An item comes out once the newest event time seen has moved more than the bound past it (the
    horizon), in ``(event time, arrival)`` order. One that arrives behind the horizon already (more out of
    order than the bound) comes out at once, after everything the horizon had released: exactly the
    order of a heap popped after every push, which the tests keep as the reference. Items are released
    in sorted runs (a C sort of a list that is mostly in order already) rather than through a heap,
    which costs a third as much per event; the list holds at most about twice the bound's worth.
    """
    pending: list[T] = []  # a sorted remainder, then what arrived since, in arrival order
    newest: int | None = None
    sort_at = release_batch
    for item in stream:
        at = item[0]
        if newest is None or at > newest:
            newest = at
        elif at < newest - max_disorder_ms:  # behind the horizon, which has not moved since it released
            yield from _release(pending, newest - max_disorder_ms)
            yield item
            continue
        pending.append(item)
        if len(pending) >= sort_at:
            yield from _release(pending, newest - max_disorder_ms)
            sort_at = len(pending) + max(release_batch, len(pending))
    pending.sort(key=_event_ms)
    yield from pending


_event_ms = operator.itemgetter(0)


def _release(pending: list[T], horizon_ms: int) -> list[T]:
    """Take the items before ``horizon_ms`` out of ``pending``, sorted; the rest stays, sorted.

    The sort is stable and ``pending`` is in arrival order after its sorted part, so ties keep their
    arrival order."""
    pending.sort(key=_event_ms)
    cut = bisect.bisect_left(pending, horizon_ms, key=_event_ms)
    released = pending[:cut]
    del pending[:cut]
    return released


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How logs are read: by the replay, its reading process and ``replay --to-kafka`` alike."""

    max_disorder_ms: int  # reorder buffer per input, in event time
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES  # longer lines are dead-lettered as ``oversized``
    not_after_ms: int | None = None  # event times after this are ``out_of_range`` (clock skew)


def merged_events(
    paths: Iterable[str],
    on_invalid: Callable[[DeadLetter], None],
    options: ReadOptions,
    counter: ByteCounter | None = None,
    keep_raw: bool = False,
    reduce: Callable[[Event, int], Any] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """All events of all inputs, in event-time order (within the disorder bound):
    ``(event_ms, seq, event)``, plus the raw line with ``keep_raw``.

    With ``reduce``, each event is replaced by ``reduce(event, event_ms)`` as soon as it is decoded, before
    it waits in the reorder buffer: a digest made while the event is still in the CPU's cache costs 40 %
    less than one made after the wait, and the buffer holds the smaller digests.

    A file is opened only when the merge comes within the disorder bound of its first event, so a year of
    daily dumps is read a day or two at a time: opening every file at once held each one's read-ahead
    buffers (tens of MiB) and file descriptor for the whole replay."""
    paths = list(paths)
    max_event_bytes, not_after_ms = options.max_event_bytes, options.not_after_ms

    def stream(path: str) -> Iterator[tuple[Any, ...]]:
        lines = decode_lines(
            open_lines(path, counter), path, on_invalid, max_event_bytes, keep_raw, not_after_ms, reduce
        )
        return reorder(lines, options.max_disorder_ms)

    if len(paths) == 1:
        return stream(paths[0])
    starts = sorted(
        (_first_event_ms(path, max_event_bytes, not_after_ms), order, path) for order, path in enumerate(paths)
    )
    return _merge_as_reached(starts, stream, options.max_disorder_ms)


def _merge_as_reached(
    starts: list[tuple[float, int, str]],
    stream: Callable[[str], Iterator[T]],
    max_disorder_ms: int,
) -> Iterator[T]:
    """:func:`heapq.merge` of the files' streams by event time (ties to the file named first, as it does),
    each stream started once the merge reaches its file's first event time less ``max_disorder_ms``:
    until then nothing in that file can come next."""
    heap: list[tuple[int, int, T, Iterator[T]]] = []  # (event time, file order, item, its stream)
    waiting = deque(starts)  # (first event time, file order, path), earliest first
    while heap or waiting:
        while waiting and (not heap or waiting[0][0] - max_disorder_ms <= heap[0][0]):
            _first_ms, order, path = waiting.popleft()
            items = stream(path)
            item = next(items, None)
            if item is not None:
                heapq.heappush(heap, (item[0], order, item, items))
        if not heap:
            continue
        _at, order, item, items = heap[0]
        yield item
        following = next(items, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], order, following, items))


_PEEK_BYTES = 64 << 10
_PEEK_READS = 16  # at most 1 MiB of a file is read to find its first event


def _first_event_ms(path: str, max_event_bytes: int, not_after_ms: int | None) -> float:
    """The event time of the file's first valid event, read from its first bytes; minus infinity (open at once)
    for stdin and pipes, which cannot be read twice, and wherever it is not found in the first MiB. A file
    that cannot be read also gets minus infinity: opening it at once reports the error where it always did."""
    if path == "-" or not os.path.isfile(path):
        return -math.inf
    try:
        with open(path, "rb") as raw:
            inflate = zlib.decompressobj(wbits=31) if raw.peek(2)[:2] == _GZIP_MAGIC else None
            pending = b""
            for _ in range(_PEEK_READS):
                data = raw.read(_PEEK_BYTES)
                if inflate is not None:  # at most 1 MiB inflated per read: a gzip bomb stays small here too
                    data = inflate.decompress(inflate.unconsumed_tail + data, 1 << 20)
                *lines, pending = (pending + data).split(b"\n")
                if not data:  # the end: the last line may lack its newline
                    lines.append(pending)
                for line in lines:
                    decoded = decode_timed(line, max_event_bytes, not_after_ms)
                    if not isinstance(decoded, Invalid):
                        return decoded[0]
                if not data:
                    break
    except (OSError, zlib.error):
        pass
    return -math.inf
