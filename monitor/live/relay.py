"""The window-facts relay: every worker's window facts to the group's one window stage, and that stage's
state kept across restarts.

The windowed rules are about agreements and units, not request ids, so they cannot be split by the input
partitions: one window stage counts the facts of every partition, on the worker that has the one partition
of ``<group>-window-facts``. Each worker sends, at each checkpoint (:class:`FactsOutbox`), what its batches
gave the windowed rules since the last one, each fact with the input partition and offset of its event, the
offset it has handled up to in each input partition, and its watermark for each of its partitions.

The stage's owner (:class:`StageHost`) keeps, for each input partition, the offset up to which it has
counted the facts of every event: a record's facts are the facts of all events up to its handled offsets.
After a crash the events since the last committed offset are handled again, against join state as of the
last checkpoint, and their facts arrive a second time; the stage skips those of events it has counted. A
joined disclosure is the one fact of two events, made by whichever of request and response is handled
second, and which one that is can change when they are handled again; it names the other one's offset too.
A record whose worker had handled requests up to ``a`` and responses up to ``b`` of a partition number has
every pair of a request at most ``a`` and a response at most ``b`` (with the records before it), so the
stage keeps those ``(a, b)`` of each partition number that no other covers, and counts a joined disclosure
only if none covers its pair. The stage's watermark is
the smallest heard for any input partition. Its state, with those offsets and watermarks, goes to the
compacted ``<group>-window-state`` at each checkpoint; the stage's next owner takes it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from monitor.core.findings import Finding
from monitor.core.ledger import AccountingEntry
from monitor.core.policy import Policy
from monitor.core.windows.facts import Fact, JoinedFact
from monitor.core.windows.stage import WindowStage
from monitor.errors import BrokerError
from monitor.live.kafka import KafkaSettings, read_last_record
from monitor.live.topic_writer import TopicWriter

log = logging.getLogger("dismon.worker")

FACTS_KEY = b"facts"
WINDOWS_KEY = b"windows"
#: The version of :class:`FactsRecord` written; 1 (without ``handled``) and 2 (without ``entries``) are read
#: too, anything else is logged and skipped.
FACTS_VERSION = 3
_READ_VERSIONS = (1, 2, 3)


class FactsRecord(msgspec.Struct, array_like=True):
    """A record on ``<group>-window-facts``: what one worker's batches gave the windowed rules since its
    last checkpoint, each fact with the input partition ("topic:partition") and offset of its event; that
    worker's watermark for each of its partitions; and the offset of each input partition it has handled
    up to, all of whose facts are in this record or an earlier one."""

    version: int
    marks: list[tuple[str, int]]
    facts: list[tuple[str, int, Fact]]
    handled: list[tuple[str, int]] = []
    # The accounting entries of the disclosures judged (monitor/live/ledger.py): to the group's one ledger writer.
    entries: list[AccountingEntry] = []


class StageSnapshot(msgspec.Struct):
    """The record on ``<group>-window-state``: the window stage as of a checkpoint, up to which offset of
    each input partition it has counted, and the watermarks it has heard."""

    counted: dict[str, int]
    marks: dict[str, int]
    stage: bytes
    pairs: dict[str, list[tuple[int, int]]] = {}


_ENCODER = msgspec.msgpack.Encoder()
_FACTS_DECODER = msgspec.msgpack.Decoder(FactsRecord)
_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(StageSnapshot)


class FactsOutbox:
    """The window facts of this worker's batches, held until the next checkpoint sends them."""

    def __init__(self, writer: TopicWriter) -> None:
        self._writer = writer
        self._facts: list[tuple[str, int, Fact]] = []
        self._entries: list[AccountingEntry] = []
        self._marks_sent: list[tuple[str, int]] = []

    def add(self, source: str, offset: int, fact: Fact) -> None:
        self._facts.append((source, offset, fact))

    def add_entry(self, entry: AccountingEntry) -> None:
        self._entries.append(entry)

    async def send(self, marks: list[tuple[str, int]], handled: list[tuple[str, int]]) -> None:
        """The facts since the last checkpoint, with the watermark of each assigned input partition
        (``"topic:partition"``) and the offset handled up to in each; returns once the broker has them.
        Nothing is sent when there are no facts and no watermark has moved."""
        if not self._facts and not self._entries and marks == self._marks_sent:
            return
        record = _ENCODER.encode(FactsRecord(FACTS_VERSION, marks, self._facts, handled, self._entries))
        self._facts, self._entries, self._marks_sent = [], [], marks
        await asyncio.gather(*await self._writer.write([(FACTS_KEY, record)]))


class StageHost:
    """The window stage on the worker that owns the facts topic's partition (and nothing on the others)."""

    def __init__(self, policy: Policy, kafka: KafkaSettings, writer: TopicWriter, input_partitions: int) -> None:
        self._kafka = kafka
        self._writer = writer
        self._input_partitions = input_partitions  # of all input topics: the stage waits for a mark from each
        self._requests, self._responses = kafka.topic("requests"), kafka.topic("responses")
        self.policy = policy
        self.owned = False
        self.on_entries: Callable[[list[AccountingEntry]], None] | None = None  # the ledger writer, if any
        self._fresh()

    def _fresh(self) -> None:
        self.stage = WindowStage(self.policy)
        self.counted: dict[str, int] = {}  # input partition -> offset up to which the stage has counted facts
        # partition number -> the (requests, responses) offsets of records that no other record covers
        self.pairs: dict[str, list[tuple[int, int]]] = {}
        self.marks: dict[str, int] = {}  # input partition -> watermark heard from the worker that has it
        self._last_snapshot = b""

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.stage.set_policy(policy)

    def apply(self, raw: bytes | None) -> list[Finding]:
        """One :class:`FactsRecord`: the facts of events not counted before, then the stage's watermark moved
        to the smallest heard for any input partition."""
        if raw is None or not self.owned:
            return []
        try:
            record = _FACTS_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.error("unreadable record on %s skipped: %s", self._kafka.facts_topic, exc)
            return []
        if record.version not in _READ_VERSIONS:
            log.error("record of version %d on %s skipped (this worker reads %d)", record.version,
                      self._kafka.facts_topic, FACTS_VERSION)  # fmt: skip
            return []
        if record.entries and self.on_entries is not None:
            self.on_entries(record.entries)  # idempotent: the ledger drops entries it holds already
        found: list[Finding] = []
        counted, before = self.counted, dict(self.counted)
        apply = self.stage.apply
        last_source, last_counted = "", -1  # facts come in runs of one input partition
        covered: list[tuple[int, int]] = []
        for source, offset, fact in record.facts:
            if source != last_source:
                if last_source:
                    counted[last_source] = max(counted.get(last_source, -1), last_counted)
                last_source, last_counted, seen = source, -1, before.get(source, -1)
                topic, _, partition = source.rpartition(":")
                of_requests, covered = topic == self._requests, self.pairs.get(partition, [])
            if type(fact) is JoinedFact and fact.paired >= 0:
                # A joined disclosure counts unless a record the stage has counted covers both its events: the
                # (requests, responses) offsets of this one and of the one it was paired with.
                request, response = (offset, fact.paired) if of_requests else (fact.paired, offset)
                for a, b in covered:
                    if request <= a and response <= b:
                        break
                else:
                    found += apply(fact)
            elif offset > seen:  # not counted before (handled again after a crash)
                found += apply(fact)
            if offset > last_counted:
                last_counted = offset
        if last_source:
            counted[last_source] = max(counted.get(last_source, -1), last_counted)
        for source, offset in record.handled:
            counted[source] = max(counted.get(source, -1), offset)
        self._cover_pairs(dict(record.handled))
        for source, mark in record.marks:
            if mark > self.marks.get(source, mark - 1):
                self.marks[source] = mark
        if len(self.marks) >= self._input_partitions:
            found += self.stage.advance_to(min(self.marks.values()))
        return found

    def _cover_pairs(self, handled: dict[str, int]) -> None:
        """Add each partition number's (requests, responses) offsets handled to the pairs counted."""
        for partition in {source.rpartition(":")[2] for source in handled}:
            a = handled.get(f"{self._requests}:{partition}", -1)
            b = handled.get(f"{self._responses}:{partition}", -1)
            covered = self.pairs.setdefault(partition, [])
            if not any(a <= x and b <= y for x, y in covered):
                covered[:] = [(x, y) for x, y in covered if not (x <= a and y <= b)] + [(a, b)]

    async def save(self) -> None:
        """The stage's state to ``<group>-window-state`` if it changed; returns once the broker has it."""
        if not (self.owned and self.stage.active):
            return
        snapshot = _ENCODER.encode(StageSnapshot(self.counted, self.marks, self.stage.snapshot(), self.pairs))
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
        if raw is not None:
            self.restore(raw)

    def restore(self, raw: bytes) -> None:
        """The stage as of a :class:`StageSnapshot` record (an unreadable one is logged, the stage afresh)."""
        try:
            saved = _SNAPSHOT_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.error("windowed state in %s unreadable (%s); the windowed rules start afresh",
                      self._kafka.windows_topic, exc)  # fmt: skip
            return
        self.stage.restore(saved.stage)
        self.counted, self.marks, self._last_snapshot = dict(saved.counted), dict(saved.marks), raw
        self.pairs = {partition: list(covered) for partition, covered in saved.pairs.items()}
        log.info("window stage taken back (counted up to offsets %s)", self.counted)
