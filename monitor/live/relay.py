"""The window-facts relay: every worker's window facts to the group's one window stage, and that stage's
state kept across restarts.

The windowed rules are about agreements and units, not request ids, so they cannot be split by the input
partitions: one window stage counts the facts of every partition, on the worker that has the one partition
of ``<group>-window-facts``. Each worker sends what its batches gave the windowed rules (:class:`FactsOutbox`),
each fact with the input partition and offset of its event, and its watermark for each of its partitions.
The stage's owner (:class:`StageHost`) counts a fact only past the offset it has counted for that input
partition, so a batch handled again after a crash is not counted twice, and moves the stage's watermark to
the smallest heard for any input partition. Its state, with those offsets and watermarks, goes to the
compacted ``<group>-window-state`` at each checkpoint; the stage's next owner takes it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from monitor.core.findings import Finding
from monitor.core.policy import Policy
from monitor.core.windows.facts import Fact
from monitor.core.windows.stage import WindowStage
from monitor.errors import BrokerError
from monitor.live.kafka import KafkaSettings, read_last_record
from monitor.live.topic_writer import TopicWriter

log = logging.getLogger("dismon.worker")

FACTS_KEY = b"facts"
WINDOWS_KEY = b"windows"
#: The version of :class:`FactsRecord`: a record of another version is logged and skipped.
FACTS_VERSION = 1


class FactsRecord(msgspec.Struct, array_like=True):
    """A record on ``<group>-window-facts``: what one worker's batches gave the windowed rules since its
    last checkpoint, each fact with the input partition ("topic:partition") and offset of its event, and
    that worker's watermark for each of its partitions."""

    version: int
    marks: list[tuple[str, int]]
    facts: list[tuple[str, int, Fact]]


class StageSnapshot(msgspec.Struct):
    """The record on ``<group>-window-state``: the window stage as of a checkpoint, up to which offset of
    each input partition it has counted, and the watermarks it has heard."""

    counted: dict[str, int]
    marks: dict[str, int]
    stage: bytes


_ENCODER = msgspec.msgpack.Encoder()
_FACTS_DECODER = msgspec.msgpack.Decoder(FactsRecord)
_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(StageSnapshot)


class FactsOutbox:
    """The window facts of this worker's batches, held until the next checkpoint sends them."""

    def __init__(self, writer: TopicWriter) -> None:
        self._writer = writer
        self._facts: list[tuple[str, int, Fact]] = []
        self._marks_sent: list[tuple[str, int]] = []

    def add(self, source: str, offset: int, fact: Fact) -> None:
        self._facts.append((source, offset, fact))

    async def send(self, marks: list[tuple[str, int]]) -> None:
        """The facts since the last checkpoint, with the watermark of each assigned input partition
        (``"topic:partition"``); returns once the broker has them. Nothing is sent when there are no facts
        and no watermark has moved."""
        if not self._facts and marks == self._marks_sent:
            return
        record = _ENCODER.encode(FactsRecord(FACTS_VERSION, marks, self._facts))
        self._facts, self._marks_sent = [], marks
        await asyncio.gather(*await self._writer.write([(FACTS_KEY, record)]))


class StageHost:
    """The window stage on the worker that owns the facts topic's partition (and nothing on the others)."""

    def __init__(self, policy: Policy, kafka: KafkaSettings, writer: TopicWriter, input_partitions: int) -> None:
        self._kafka = kafka
        self._writer = writer
        self._input_partitions = input_partitions  # of all input topics: the stage waits for a mark from each
        self.policy = policy
        self.owned = False
        self._fresh()

    def _fresh(self) -> None:
        self.stage = WindowStage(self.policy)
        self.counted: dict[str, int] = {}  # input partition -> highest offset whose facts the stage has counted
        self.marks: dict[str, int] = {}  # input partition -> watermark heard from the worker that has it
        self._last_snapshot = b""

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.stage.set_policy(policy)

    def apply(self, raw: bytes | None) -> list[Finding]:
        """One :class:`FactsRecord`: each fact counted once, then the stage's watermark moved to the smallest
        heard for any input partition."""
        if raw is None or not self.owned:
            return []
        try:
            record = _FACTS_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.error("unreadable record on %s skipped: %s", self._kafka.facts_topic, exc)
            return []
        if record.version != FACTS_VERSION:
            log.error("record of version %d on %s skipped (this worker reads %d)", record.version,
                      self._kafka.facts_topic, FACTS_VERSION)  # fmt: skip
            return []
        found: list[Finding] = []
        counted, before = self.counted, dict(self.counted)
        for source, offset, fact in record.facts:
            if offset > before.get(source, -1):  # not counted before (a batch handled again after a crash)
                found += self.stage.apply(fact)
                counted[source] = max(counted.get(source, -1), offset)
        for source, mark in record.marks:
            if mark > self.marks.get(source, mark - 1):
                self.marks[source] = mark
        if len(self.marks) >= self._input_partitions:
            found += self.stage.advance_to(min(self.marks.values()))
        return found

    async def save(self) -> None:
        """The stage's state to ``<group>-window-state`` if it changed; returns once the broker has it."""
        if not (self.owned and self.stage.active):
            return
        snapshot = _ENCODER.encode(StageSnapshot(self.counted, self.marks, self.stage.snapshot()))
        if snapshot != self._last_snapshot:
            await asyncio.gather(*await self._writer.write([(WINDOWS_KEY, snapshot)]))
            self._last_snapshot = snapshot

    async def take(self, owned: bool, on_fatal: Callable[[BaseException], None]) -> None:
        """After a rebalance: on gaining the facts partition, take back the stage's last snapshot; on losing it,
        drop the stage (its new owner takes the snapshot back). A broker that cannot give the snapshot is fatal:
        counting afresh would double-count or miss."""
        if owned == self.owned:
            return
        self._fresh()
        self.owned = owned
        if not (owned and self.stage.active):
            return
        topic = self._kafka.windows_topic
        try:
            raw = await read_last_record(self._kafka, topic)
        except BrokerError as exc:
            log.critical("cannot read the windowed state from %s: %s; stopping", topic, exc)
            on_fatal(exc)
            return
        if raw is None:
            return
        try:
            saved = _SNAPSHOT_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.error("windowed state in %s unreadable (%s); the windowed rules start afresh", topic, exc)
            return
        self.stage.restore(saved.stage)
        self.counted, self.marks, self._last_snapshot = dict(saved.counted), dict(saved.marks), raw
        log.info("window stage taken back (counted up to offsets %s)", self.counted)
