"""The live worker's pipeline, without Faust: batches of input messages in; alerts, dead letters, window facts
and join-state changes out, in the order that keeps every finding across a crash.

    requests ─┐
    responses ├─► decode ─► reduce ─► join (Joiner; state in a changelog-backed table) ─► <prefix>.alerts
    disposals ┘     │                      └─ window facts ─► <group>-window-facts ─► window stage (relay.py)
                    └─ invalid events ─► <prefix>.deadletter (reason, topic, partition, offset)

Each batch goes through the join event by event, with the watermark of the worker's partitions
(:class:`~monitor.live.clock.PartitionClock`) after every event, as a replay moves its own; its findings go to the
alerts topic before the batch is done. Every quarter second (a checkpoint: :meth:`Pipeline.checkpoint`) the
window facts since the last one go to the stage, then the stage's state (on the worker that runs it), then the
join-state changes to the changelog; only then are the batches' offsets acked (monitor/live/faust/batching.py).

Both states remember what was raised, so neither may reach the broker before the alerts (a crash in between
would lose those alerts for good; this way round it can only send one twice, with the same ``alert_id``). The
facts go out before the join state: an event the join state already holds gives no facts when it is handled
again after a crash. They go out only at a checkpoint, just before the join state, not with each batch: facts
counted while their join state is not yet written can be counted again, or not at all, when the events are
handled again after a crash, because which of a request and its disclosing response completes the join
depends on how the partitions interleave.

Delivery is at least once: after a crash the events since the last committed offset are processed again, and
findings may be sent twice with the same ``alert_id``; consumers de-duplicate on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from monitor.core.digests import Reducer
from monitor.core.events import FUTURE_TOLERANCE_MS, Invalid, decode_timed
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.joiner import Joiner
from monitor.core.policy import Policy
from monitor.live.clock import PartitionClock
from monitor.live.relay import FactsOutbox, StageHost
from monitor.live.settings import WorkerSettings
from monitor.live.topic_writer import TopicWriter
from monitor.live.writeback import WriteBack
from monitor.outputs.alerts import FindingSender, dead_letter_record
from monitor.outputs.metrics import Metrics

log = logging.getLogger("dismon.worker")
_ENTRY_ENCODER = msgspec.msgpack.Encoder()


class Message(Protocol):
    """An input message as the consumer hands it over."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Writers:
    """Where the pipeline writes, one topic each."""

    alerts: TopicWriter
    deadletter: TopicWriter
    changelog: TopicWriter  # the join table's
    facts: TopicWriter  # <group>-window-facts
    windows: TopicWriter  # <group>-window-state


class Pipeline:
    """The worker's detection: reduce, join, window facts, and the writes that make it durable."""

    def __init__(
        self,
        settings: WorkerSettings,
        policy: Policy,
        hasher: SubjectHasher,
        table: MutableMapping[str, JoinEntry],
        origins: MutableMapping[str, int],
        writers: Writers,
        sender: FindingSender,
        metrics: Metrics,
        now_ms: Callable[[], int],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._writers = writers
        self._sender = sender
        self._now_ms = now_ms
        self._on_fatal = on_fatal
        kafka = settings.kafka
        self.sources = frozenset(kafka.topic(kind) for kind in ("requests", "responses", "disposals"))
        self._facts_topic = kafka.facts_topic
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset handled
        self.assigned: list[tuple[str, int]] = []  # input topic partitions, sorted
        self._owned: set[int] = set()  # partition numbers assigned at the last rebalance
        self._position = ("", -1)  # input partition and offset of the last event handled
        # The join's writes wait here and reach the table and its changelog at the next checkpoint; each key's
        # changelog records go to the input partition of the event that first wrote it (``origins``).
        self.table = table
        self.join_state: WriteBack[JoinEntry] = WriteBack(table, origins)
        self.reducer = Reducer(policy, hasher)
        self.joiner = Joiner(policy, self.join_state, observer=metrics, max_entries=settings.max_join_entries)
        self.clock = PartitionClock(settings.allowed_lateness_ms, settings.idle_ms, now_ms)
        self.outbox = FactsOutbox(writers.facts)
        self.stage = StageHost(policy, kafka, writers.windows, len(self.sources) * settings.partitions)
        # Batches, timer ticks and checkpoints take turns: a checkpoint writes state as of whole batches.
        self._turn = asyncio.Lock()
        self._refused_logged = (0, 0.0)  # (count, wall-clock seconds) of the last "join state full" log line

    @property
    def policy(self) -> Policy:
        return self.joiner.policy

    async def handle(self, messages: Sequence[Message]) -> None:
        """One fetched batch, in order: input events through the join one by one, window-facts records (on the
        worker that runs the stage) through the stage; then the findings to the alerts topic."""
        async with self._turn:
            not_after_ms = self._now_ms() + FUTURE_TOLERANCE_MS
            findings: list[Finding] = []
            dead: list[tuple[bytes, bytes | None]] = []
            reduce, apply, clock, outbox = self.reducer.reduce, self.joiner.apply, self.clock, self.outbox
            join_state = self.join_state
            max_event_bytes = self.settings.max_event_bytes
            for message in messages:
                if message.topic == self._facts_topic:
                    findings += self.stage.apply(message.value)
                    continue
                source = (message.topic, message.partition)
                self.offsets[source] = message.offset
                raw = message.value
                decoded = Invalid("empty") if raw is None else decode_timed(raw, max_event_bytes, not_after_ms)
                if isinstance(decoded, Invalid):
                    dead.append(self._dead_letter(decoded.reason, message))
                    continue
                event_ms, event = decoded
                clock.observe(source, event_ms)
                join_state.origin = message.partition
                self._position = where, offset = f"{message.topic}:{message.partition}", message.offset
                for item in apply(reduce(event, event_ms), event_ms, clock.watermark()):
                    if type(item) is Finding:
                        findings.append(item)
                    else:
                        outbox.add(where, offset, item)  # type: ignore[arg-type]  # a window fact
            join_state.origin = None  # what timers write later belongs where its key already is
            if dead:
                await self._writers.deadletter.write(dead)
            await self._send_alerts(findings)

    def _dead_letter(self, reason: str, message: Message) -> tuple[bytes, bytes | None]:
        self.metrics.dead_letter(reason)
        value = message.value or b""
        where = {"topic": message.topic, "partition": message.partition, "offset": message.offset, "size": len(value)}
        # The payload only on request (--dead-letter-payload), and only here on the dead-letter topic.
        payload = bytes(value) if self.settings.dead_letter_payload else None
        return message.key or b"", dead_letter_record(reason, where, self._now_ms(), payload)

    async def tick(self) -> None:
        """Once a second: let the watermark move on a quiet stream (and say so if the join state is full)."""
        async with self._turn:
            await self._send_alerts(self._advance())
        refused, (logged, at) = self.joiner.stats.refused, self._refused_logged
        now_s = self._now_ms() / 1000
        if refused > logged and now_s - at >= 60:
            log.error(
                "join state full (%d request ids, --max-join-entries): %d events of new request ids not "
                "joined so far; joined rules cannot judge them",
                len(self.table),
                refused,
            )
            self._refused_logged = (refused, now_s)

    def _advance(self) -> list[Finding]:
        watermark = self.clock.watermark()
        if watermark is None:
            return []
        findings: list[Finding] = []
        for item in self.joiner.advance_to(watermark):
            if type(item) is Finding:
                findings.append(item)
            else:  # timers make no window facts today; one would go with the last event's position
                self.outbox.add(*self._position, item)  # type: ignore[arg-type]
        return findings

    async def _send_alerts(self, findings: list[Finding]) -> None:
        """Findings to the alerts topic; returns once the broker has them."""
        if not findings:
            return
        encode = self._sender.encode
        records = [(finding.alert_id.encode(), encode(finding)) for finding in findings]
        await asyncio.gather(*await self._writers.alerts.write(records))

    async def checkpoint(self) -> None:
        """Make durable what the batches and ticks since the last checkpoint did (their alerts are on the
        broker already): their window facts, the window stage's state, if this worker runs it, and the
        join-state changes. Their offsets are acked after (see the module's docstring for this order)."""
        async with self._turn:
            await self.outbox.send(self.clock.watermark(), self.assigned)
            await self.stage.save()
            changes = self.join_state.flush()
            if changes:
                await self._writers.changelog.write_to(_changelog_records(changes))

    async def take_assignment(self, assigned: list[tuple[str, int]], owns_facts: bool) -> int:
        """After a rebalance: the input partitions now assigned, and whether this worker now runs the window
        stage. Forgets the join entries of partitions given away; returns how many."""
        self.clock.assign(assigned)
        self.assigned = assigned
        forgotten = await self._forget_given_away({partition for _topic, partition in assigned})
        await self.stage.take(owns_facts, self._on_fatal)
        return forgotten

    async def _forget_given_away(self, partitions: set[int]) -> int:
        given_away, self._owned = self._owned - partitions, set(partitions)
        if not given_away:
            return 0  # (a pass over every key costs seconds at a million entries)
        origins = self.join_state.origins
        stale = [key for key, partition in origins.items() if partition in given_away]
        for key in stale:
            self.table.pop(key, None)
            del origins[key]
        return len(stale)

    def restore_state(self) -> int:
        """After recovery: re-arm the timers of every entry this worker now owns."""
        for request_id, entry in self.table.items():
            self.joiner.restore(request_id, entry)
        return len(self.table)

    def set_policy(self, policy: Policy) -> None:
        """Judge from now on by ``policy``; join state, timers and windows carry over."""
        self.reducer.set_policy(policy)
        self.joiner.set_policy(policy)
        self.stage.set_policy(policy)
        self.metrics.set_policy(policy)


def _changelog_records(
    changes: list[tuple[str, JoinEntry | None, int | None]],
) -> list[tuple[int, bytes, bytes | None]]:
    """Join-state changes as changelog records, each in its key's input partition."""
    encode = _ENTRY_ENCODER.encode
    records = []
    for key, value, partition in changes:
        if partition is None:  # every key is first written by an event, or recovered with its partition
            raise RuntimeError(f"join entry of unknown input partition: {len(key)}-character key")
        records.append((partition, key.encode(), None if value is None else encode(value)))
    return records
