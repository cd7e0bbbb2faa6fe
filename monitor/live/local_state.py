"""The join state on local disk, per changelog partition, so that a restart in place reads only the changelog's
tail. Kafka Streams does the same with RocksDB and a checkpoint file; here the worker's state is in memory and
the disk holds a copy of its changelog:

    <state dir>/<changelog topic>/<partition>/
        snapshot   the partition's entries as of a changelog offset
        log        frames appended since: each delivered changelog write, with its base offset

Both are msgpack with a CRC-32 per frame. The log is appended when the broker confirms a write, so it never
holds what the changelog does not; what the crash cut off is read from the changelog's tail. When the log has
grown past half the entries, the next write of the partition carries a fresh snapshot and the log starts
again, so what a restart reads follows the live state, not the history.

Local state is used only after it is checked against the changelog (:func:`usable`): the record at its last
offset must be there, with the same key, value and timestamp (the worker stamps its changelog writes itself).
Anything else (no directory, a bad checksum, another topic, an offset past the changelog's end, another record
at that offset) and the partition is read from the changelog whole, with a log line that says why. One process
at a time uses a directory (a lock).

Nothing here knows Kafka or Faust; monitor/live/recovery.py reads the changelog and checks the copy.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from monitor.core.join import JoinEntry
from monitor.errors import UsageError

log = logging.getLogger("dismon.worker")

_HEADER = struct.Struct(">II")  # body length, CRC-32 of the body
Record = tuple[bytes, bytes | None]  # a changelog record: key, value (None: a tombstone)
#: What identifies a changelog record: its key, the CRC-32 of its value (0: a tombstone) and its timestamp in ms
#: (-1: unknown). The timestamp tells a record apart from an identical one written again (a replayed input).
Mark = tuple[str, int, int]


class _Snapshot(msgspec.Struct, array_like=True):
    topic: str
    partition: int
    offset: int  # the last changelog offset the entries include; -1: none
    last: Mark | None  # the record at that offset
    entries: dict[str, Any]  # JoinEntry, or its msgpack bytes as msgspec.Raw when written


class _LoadedSnapshot(msgspec.Struct, array_like=True):
    topic: str
    partition: int
    offset: int
    last: Mark | None
    entries: dict[str, JoinEntry]


class _Frame(msgspec.Struct, array_like=True):
    base: int  # the changelog offset of the first record
    last: int  # CRC-32 of the last record's value (0: a tombstone)
    timestamp: int  # of the last record, in ms (-1: unknown)
    records: list[tuple[str, Any]]  # (key, JoinEntry msgpack as msgspec.Raw, or None)


class _LoadedFrame(msgspec.Struct, array_like=True):
    base: int
    last: int
    timestamp: int
    records: list[tuple[str, JoinEntry | None]]


_ENCODER = msgspec.msgpack.Encoder()
_SNAPSHOT = msgspec.msgpack.Decoder(_LoadedSnapshot)
_FRAME = msgspec.msgpack.Decoder(_LoadedFrame)


def _digest(value: bytes | None) -> int:
    return 0 if value is None else zlib.crc32(value) or 1


def _mark(key: bytes | None, value: bytes | None, timestamp_ms: int) -> Mark:
    return ((key or b"").decode(errors="replace"), _digest(value), timestamp_ms)


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _frames(data: bytes) -> list[bytes]:
    """The bodies of ``data``'s frames, up to the first torn or corrupt one (a crash mid-write)."""
    bodies, at = [], 0
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        body = data[at + _HEADER.size : at + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        bodies.append(body)
        at += _HEADER.size + length
    return bodies


@dataclass(slots=True)
class Loaded:
    """A partition's local state: its entries as of changelog ``offset`` (-1: none), and that record's key and
    value digest, to check it against the changelog."""

    entries: dict[str, JoinEntry]
    offset: int
    last: Mark | None
    frames: int  # log frames read after the snapshot
    logged: int  # records in them
    log_bytes: int  # the length of the log up to the last frame read (anything after it is cut off on resume)


def usable(loaded: Loaded, end: int, record: tuple[bytes | None, bytes | None, int] | None) -> str | None:
    """Why ``loaded`` must not be used, given the changelog partition's end (next offset) and the record found at
    ``loaded.offset`` (key, value, timestamp; None: none there); None when it may."""
    if loaded.offset < 0:
        return "the local state holds no changelog record"
    if loaded.offset >= end:
        return (
            f"the local state is ahead of the changelog (offset {loaded.offset}, the changelog ends at {end}): "
            "the topic was recreated or truncated"
        )
    if record is None or loaded.last is None:
        return f"the changelog no longer holds offset {loaded.offset} (compacted or deleted)"
    key, value, timestamp_ms = record
    found, held = _mark(key, value, timestamp_ms), loaded.last
    if found[:2] != held[:2] or (found[2] >= 0 and held[2] >= 0 and found[2] != held[2]):
        return f"the changelog's record at offset {loaded.offset} is not the one the local state ends with"
    return None


@dataclass(slots=True)
class _Partition:
    next_offset: int  # the offset the next frame must start at
    last: Mark | None
    logged: int  # records in the log since the snapshot
    log: IO[bytes] | None = field(default=None, repr=False)


@dataclass(slots=True)
class _Preload:
    done: threading.Event = field(default_factory=threading.Event)
    result: Loaded | str | None = None
    dropped: bool = False  # not wanted any more: not loaded, or let go


class LocalState:
    """One changelog topic's local copy, per partition; appended as the worker's writes are delivered."""

    def __init__(self, root: Path, topic: str) -> None:
        self.root = root / topic
        self.topic = topic
        self._partitions: dict[int, _Partition] = {}
        self._preloaded: dict[int, _Preload] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = (self.root / "lock").open("a+b")
        except OSError as exc:
            raise UsageError(f"state directory {self.root}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise UsageError(
                f"state directory {self.root} is in use by another worker; give each worker its own --state-dir"
            ) from exc

    def _dir(self, partition: int) -> Path:
        return self.root / str(partition)

    def preload(self) -> None:
        """Start loading every partition held here, in a thread, while the worker starts and joins its group
        (most of which is waiting on the network): a restart in place usually gets the same partitions back.
        :meth:`load` takes a partition's result when it is ready; :meth:`forget_preloaded` drops the rest."""
        partitions = sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())
        self._preloaded = {partition: _Preload() for partition in partitions}
        threading.Thread(
            target=self._preload, args=(dict(self._preloaded),), name="dismon-preload", daemon=True
        ).start()

    def _preload(self, slots: dict[int, _Preload]) -> None:
        for partition, slot in slots.items():
            if not slot.dropped:
                slot.result = self._load(partition)
            slot.done.set()

    def forget_preloaded(self) -> None:
        """Drop what was preloaded and not taken (partitions another worker got)."""
        for slot in self._preloaded.values():
            slot.dropped = True
            slot.result = None
        self._preloaded = {}

    def load(self, partition: int) -> Loaded | str:
        """The partition's local state, or why there is none to use."""
        slot = self._preloaded.pop(partition, None)
        if slot is not None:
            slot.done.wait()
            if slot.result is not None:
                return slot.result
        return self._load(partition)

    def _load(self, partition: int) -> Loaded | str:
        where = self._dir(partition)
        try:
            snapshot_bytes = (where / "snapshot").read_bytes()
        except FileNotFoundError:
            return "no local state"
        except OSError as exc:
            return f"the local state cannot be read: {exc.strerror or exc}"
        bodies = _frames(snapshot_bytes)
        if len(bodies) != 1:
            return "the local snapshot is corrupt (bad checksum or torn write)"
        try:
            snapshot = _SNAPSHOT.decode(bodies[0])
        except msgspec.DecodeError as exc:
            return f"the local snapshot cannot be decoded: {exc}"
        if (snapshot.topic, snapshot.partition) != (self.topic, partition):
            return f"the local snapshot is of {snapshot.topic}[{snapshot.partition}]"
        entries, offset, last, frames, logged, used = snapshot.entries, snapshot.offset, snapshot.last, 0, 0, 0
        try:
            log_bytes = (where / "log").read_bytes()
        except OSError:
            log_bytes = b""
        for body in _frames(log_bytes):
            try:
                frame = _FRAME.decode(body)
            except msgspec.DecodeError:
                break
            end = frame.base + len(frame.records)
            if end > offset + 1 and (frame.base != offset + 1 or not frame.records):
                break  # a gap: what follows is read from the changelog
            used += _HEADER.size + len(body)
            if end <= offset + 1:
                continue  # in the snapshot already (written just before the log was started again)
            for key, entry in frame.records:
                if entry is None:
                    entries.pop(key, None)
                else:
                    entries[key] = entry
            offset = end - 1
            last = (frame.records[-1][0], frame.last, frame.timestamp)
            frames += 1
            logged += len(frame.records)
        return Loaded(entries, offset, last, frames, logged, used)

    def resume(self, partition: int, loaded: Loaded) -> None:
        """Appends follow on from ``loaded`` (checked against the changelog): the log is cut after its last frame
        read, so that what is appended next is read too."""
        where = self._dir(partition) / "log"
        log_file = where.open("r+b") if where.exists() else where.open("w+b")
        log_file.truncate(loaded.log_bytes)
        log_file.seek(loaded.log_bytes)
        self.close(partition)
        self._partitions[partition] = _Partition(loaded.offset + 1, loaded.last, loaded.logged, log_file)

    def start(
        self, partition: int, entries: Mapping[str, bytes], offset: int, last: Record | None, timestamp_ms: int = -1
    ) -> None:
        """The partition is now held complete up to changelog ``offset``, as ``entries`` (msgpack values): written
        as its snapshot, and appends follow on from there. ``last``: the record at ``offset``, written at
        ``timestamp_ms``."""
        checked = None if last is None else _mark(*last, timestamp_ms)
        self._write(partition, {key: msgspec.Raw(value) for key, value in entries.items()}, offset, checked)

    def _write(self, partition: int, entries: Any, offset: int, last: Mark | None) -> None:
        where = self._dir(partition)
        where.mkdir(parents=True, exist_ok=True)
        temporary = where / "snapshot.tmp"
        temporary.write_bytes(_frame(_ENCODER.encode(_Snapshot(self.topic, partition, offset, last, entries))))
        os.replace(temporary, where / "snapshot")
        state = self._partitions.get(partition)
        if state is not None and state.log is not None:
            state.log.close()
        self._partitions[partition] = _Partition(offset + 1, last, 0, (where / "log").open("wb"))

    def append(self, partition: int, base: int, records: Sequence[Record], timestamp_ms: int = -1) -> None:
        """Changelog records the broker has confirmed at offsets ``base`` onwards, written at ``timestamp_ms``."""
        state = self._partitions.get(partition)
        if state is None or not records:
            return
        if base < state.next_offset:  # never expected (one writer per partition); distrust the copy from here
            log.warning("local state of partition %d: a write confirmed out of order; it is dropped", partition)
            self.drop(partition)
            return
        key, value = records[-1]
        if base > state.next_offset and state.log is not None:
            # Records this worker did not write came between (Faust's recovery of what was written meanwhile):
            # the log stops here, and the next snapshot starts it again.
            state.log.close()
            state.log = None
        if state.log is not None:
            frame = _Frame(
                base,
                _digest(value),
                timestamp_ms,
                [(k.decode(), None if v is None else msgspec.Raw(v)) for k, v in records],
            )
            state.log.write(_frame(_ENCODER.encode(frame)))
            state.log.flush()
            state.logged += len(records)
        state.next_offset = base + len(records)
        state.last = _mark(key, value, timestamp_ms)

    def wants_snapshot(self, partition: int, entries: int) -> bool:
        """Whether the partition's next write should carry a snapshot: its log has grown past half its entries
        (so a restart reads at most one and a half times the live state), or it stopped at a gap."""
        state = self._partitions.get(partition)
        if state is None:
            return False
        return state.log is None or state.logged > max(entries // 2, 10_000)

    @staticmethod
    def encode(entries: Mapping[str, JoinEntry]) -> bytes:
        """A partition's entries for :meth:`write_snapshot`, encoded as of a write just handed to the producer."""
        return _ENCODER.encode(entries)

    def write_snapshot(self, partition: int, encoded: bytes) -> None:
        """Entries from :meth:`encode` as the partition's snapshot, once the write they are as of is confirmed:
        they hold the changelog up to the last confirmed append."""
        state = self._partitions.get(partition)
        if state is not None:
            self._write(partition, msgspec.Raw(encoded), state.next_offset - 1, state.last)

    def drop(self, partition: int) -> None:
        """Forget the partition's local state, files and all."""
        self.close(partition)
        for name in ("snapshot", "log"):
            (self._dir(partition) / name).unlink(missing_ok=True)

    def held(self) -> set[int]:
        """The partitions appended to."""
        return set(self._partitions)

    def close(self, partition: int) -> None:
        """The partition is no longer this worker's: stop appending (its files stay for a later take-over)."""
        state = self._partitions.pop(partition, None)
        if state is not None and state.log is not None:
            state.log.close()

    def close_all(self) -> None:
        """Stop appending to every partition, and let another process have the directory."""
        for partition in list(self._partitions):
            self.close(partition)
        self._lock.close()

    def __enter__(self) -> LocalState:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close_all()
