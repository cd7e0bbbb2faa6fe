"""The live worker's pipeline, without Faust: batches of input messages in; alerts, dead letters, window facts
and join-state changes out, in the order that keeps every finding across a crash.

    requests ─┐
    responses ├─► decode ─► reduce ─► join (a task per partition; changelog-backed) ─► <prefix>.alerts
    disposals ┘     │                      └─ window facts ─► <group>-window-facts ─► window stage (relay.py)
                    └─ invalid events ─► <prefix>.deadletter (reason, topic, partition, offset)

Each input partition number is a task (monitor/live/tasks.py): its own join state, timers and event time.
A batch goes through the tasks' joins event by event, each event followed by its task's watermark, as a
replay moves its own; the batch's findings are handed to the producer for the alerts topic at once, and the
next batch does not wait for the broker to confirm them. Every quarter second (a checkpoint:
:meth:`Pipeline.checkpoint`) the checkpoint waits until the broker has every alert sent since the last one;
then the window facts since the last one go to the stage, then the stage's state (on the worker that runs it),
then each task's join-state changes to its partition of the changelog; only then are the batches' offsets
acked (monitor/live/faust/batching.py).

Both states remember what was raised, so neither may reach the broker before the alerts (a crash in between
would lose those alerts for good; this way round it can only send one twice, with the same ``alert_id``). The
facts go out before the join state: an event the join state already holds gives no facts when it is handled
again after a crash. They go out with the offset handled up to in each input partition, so that the window
stage counts the facts of events handled again after a crash once (monitor/live/relay.py).

Delivery is at least once: after a crash the events since the last committed offset are processed again, and
findings may be sent twice with the same ``alert_id``; consumers de-duplicate on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.core.digests import Reducer
from monitor.core.events import FUTURE_TOLERANCE_MS, Invalid, decode_timed
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.joiner import Output
from monitor.core.policy import Policy
from monitor.live import entries
from monitor.live.clock import PartitionClock
from monitor.live.ledger import LedgerHost
from monitor.live.local_state import LocalState
from monitor.live.relay import FactsOutbox, StageHost
from monitor.live.settings import WorkerSettings
from monitor.live.shadow import Shadow
from monitor.live.tasks import Task, share_of
from monitor.live.topic_writer import TopicWriter
from monitor.outputs.alerts import FindingSender, dead_letter_record
from monitor.outputs.metrics import BatchedObserver, Metrics

log = logging.getLogger("dismon.worker")


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


def _keep_snapshot(local: LocalState, partition: int, encoded: bytes, delivered: asyncio.Future[object]) -> None:
    if not delivered.cancelled() and delivered.exception() is None:
        local.write_snapshot(partition, encoded)


class Pipeline:
    """The worker's detection: reduce, join per input partition, window facts, and the writes that make it
    durable."""

    def __init__(
        self,
        settings: WorkerSettings,
        policy: Policy,
        hasher: SubjectHasher,
        writers: Writers,
        sender: FindingSender,
        metrics: Metrics,
        now_ms: Callable[[], int],
        on_fatal: Callable[[BaseException], None],
        shadow: Shadow | None = None,
        ledger: LedgerHost | None = None,
        local: LocalState | None = None,
    ) -> None:
        self.settings = settings
        self.local = local  # the join state's copy on local disk (monitor/live/local_state.py)
        self.ledger = ledger  # the accounting of disclosures (monitor/live/ledger.py)
        self.shadow = shadow  # a candidate policy judging the same events (monitor/live/shadow.py)
        self.metrics = metrics
        self._observer = BatchedObserver(metrics)  # the joins' counts, to the metrics once a batch
        self._writers = writers
        self._sender = sender
        self._now_ms = now_ms
        self._on_fatal = on_fatal
        kafka = settings.kafka
        self._topics = tuple(kafka.topic(kind) for kind in ("requests", "responses", "disposals"))
        self.sources = frozenset(self._topics)
        self._facts_topic = kafka.facts_topic
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset handled
        self._source_names: dict[tuple[str, int], str] = {}  # (topic, partition) -> "topic:partition"
        self.policy = policy
        self.reducer = Reducer(policy, hasher)
        self.tasks: dict[int, Task] = {}  # input partition number -> its task
        self.outbox = FactsOutbox(writers.facts)
        self.stage = StageHost(policy, kafka, writers.windows, len(self.sources) * settings.partitions)
        if ledger is not None:
            self.stage.on_entries = ledger.add  # the entries travel with the window facts to the one writer
        # Batches, timer ticks and checkpoints take turns: a checkpoint writes state as of whole batches.
        self._turn = asyncio.Lock()
        self._refused_logged = (0, 0.0)  # (count, wall-clock seconds) of the last "join state full" log line
        self._alerts_in_flight: list[asyncio.Future[object]] = []  # deliveries the next checkpoint waits for

    def _task(self, partition: int, recovered: dict[str, JoinEntry] | None = None) -> Task:
        settings = self.settings
        task = self.tasks[partition] = Task(
            partition,
            self._topics,
            self.policy,
            {} if recovered is None else recovered,
            PartitionClock(settings.allowed_lateness_ms, settings.idle_ms, self._now_ms),
            self._observer,
            share_of(settings.max_join_entries, settings.partitions),
            None if self.ledger is None else self.outbox.add_entry,
        )
        return task

    async def handle(self, messages: Sequence[Message]) -> None:
        """One fetched batch, in order: input events through their task's join one by one, window-facts records
        (on the worker that runs the stage) through the stage; then the findings to the alerts topic."""
        async with self._turn:
            now_ms = self._now_ms()  # the wall clock once a batch: the batch arrived at once
            not_after_ms = now_ms + FUTURE_TOLERANCE_MS
            names = self._source_names
            findings: list[Finding] = []
            shadowed: list[Finding] = []
            dead: list[tuple[bytes, bytes | None]] = []
            reduce, tasks, shadow = self.reducer.reduce, self.tasks, self.shadow
            max_event_bytes = self.settings.max_event_bytes
            for message in messages:
                if message.topic == self._facts_topic:
                    findings += self.stage.apply(message.value)
                    continue
                partition = message.partition
                source = (message.topic, partition)
                self.offsets[source] = message.offset
                raw = message.value
                decoded = Invalid("empty") if raw is None else decode_timed(raw, max_event_bytes, not_after_ms)
                if isinstance(decoded, Invalid):
                    dead.append(self._dead_letter(decoded.reason, message))
                    continue
                event_ms, event = decoded
                task = tasks.get(partition) or self._task(partition)
                clock = task.clock
                clock.observe(source, event_ms, now_ms)
                name = names.get(source)
                if name is None:
                    name = names[source] = f"{message.topic}:{partition}"
                task.position = (name, message.offset)
                watermark = clock.watermark(now_ms)
                out = task.joiner.apply(reduce(event, event_ms), event_ms, watermark, message.offset)
                if out:
                    self._route(out, task.position, findings)
                if shadow is not None:
                    shadowed += shadow.apply(partition, event, event_ms, watermark, message.offset)
            self._observer.flush()
            if dead:
                await self._writers.deadletter.write(dead)
            await self._send_alerts(findings)
            if shadow is not None:
                await shadow.send(shadowed)

    def _dead_letter(self, reason: str, message: Message) -> tuple[bytes, bytes | None]:
        self.metrics.dead_letter(reason)
        value = message.value or b""
        where = {"topic": message.topic, "partition": message.partition, "offset": message.offset, "size": len(value)}
        # The payload only on request (--dead-letter-payload), and only here on the dead-letter topic.
        payload = bytes(value) if self.settings.dead_letter_payload else None
        return message.key or b"", dead_letter_record(reason, where, self._now_ms(), payload)

    async def tick(self) -> None:
        """Once a second: let each task's watermark move on a quiet stream (and say so if the join state is
        full)."""
        async with self._turn:
            await self._send_alerts(self._advance())
            self._observer.flush()
            if self.shadow is not None:
                marks = {p: w for p, task in self.tasks.items() if (w := task.clock.watermark()) is not None}
                await self.shadow.send(self.shadow.advance(marks))
        refused, (logged, at) = self.refused(), self._refused_logged
        now_s = self._now_ms() / 1000
        if refused > logged and now_s - at >= 60:
            log.error(
                "join state full (%d request ids, --max-join-entries): %d events of new request ids not "
                "joined so far; joined rules cannot judge them",
                sum(len(task) for task in self.tasks.values()),
                refused,
            )
            self._refused_logged = (refused, now_s)

    def _advance(self) -> list[Finding]:
        findings: list[Finding] = []
        for task in self.tasks.values():
            watermark = task.clock.watermark()
            if watermark is not None:
                # Timers make no window facts today; one would go with the task's last event's position.
                self._route(task.joiner.advance_to(watermark), task.position, findings)
        return findings

    def _route(self, out: Sequence[Output], position: tuple[str, int], findings: list[Finding]) -> None:
        """The join's output: findings to ``findings``, window facts to the outbox with their event's position."""
        for item in out:
            if type(item) is Finding:
                findings.append(item)
            else:
                self.outbox.add(*position, item)  # type: ignore[arg-type]  # a window fact

    async def _send_alerts(self, findings: list[Finding]) -> None:
        """Findings to the alerts topic: handed to the producer now; the next checkpoint waits until the broker
        has them, before it writes any state."""
        if not findings:
            return
        encode = self._sender.encode
        records = [(finding.alert_id.encode(), encode(finding)) for finding in findings]
        self._alerts_in_flight += await self._writers.alerts.write(records)

    async def checkpoint(self) -> None:
        """Make durable what the batches and ticks since the last checkpoint did: once the broker has their
        alerts, their window facts with each partition's watermark, the window stage's state, if this worker
        runs it, and the join-state changes, each task's to its partition of the changelog. Their offsets are
        acked after (see the module's docstring for this order)."""
        async with self._turn:
            in_flight, self._alerts_in_flight = self._alerts_in_flight, []
            await asyncio.gather(*in_flight)  # the alerts first: a delivery failed stops the worker here
            await self.outbox.send(self._marks(), [(f"{t}:{p}", offset) for (t, p), offset in self.offsets.items()])
            await self.stage.save()
            if self.ledger is not None:
                await self.ledger.save()
            encode, local = entries.encode, self.local
            for partition, task in self.tasks.items():
                changes = task.join_state.flush()
                if not changes:
                    continue
                delivered = await self._writers.changelog.write_to(
                    (partition, key.encode(), None if value is None else encode(value))
                    for key, value in changes.items()
                )
                if local is not None and local.wants_snapshot(partition, len(task.join_state.table)):
                    # The entries as of this write, kept once it is confirmed (after its records are appended).
                    delivered[-1].add_done_callback(
                        functools.partial(_keep_snapshot, local, partition, local.encode(task.join_state.table))
                    )

    def _marks(self) -> list[tuple[str, int]]:
        """Each assigned input partition with its task's watermark, for the window stage."""
        marks = []
        for partition, task in sorted(self.tasks.items()):
            watermark = task.clock.watermark()
            if watermark is not None:
                marks += [(f"{topic}:{partition}", watermark) for topic in self._topics]
        return marks

    async def take_assignment(
        self, partitions: set[int], owns_facts: bool, by_partition: dict[int, dict[str, JoinEntry]]
    ) -> int:
        """After a rebalance: the input partition numbers now assigned, whether this worker now runs the window
        stage, and the join entries recovered from the changelog, by partition (taken over, not copied). Tasks
        of partitions given away are dropped, new ones start with their recovered entries; returns how many
        entries were dropped."""
        dropped = 0
        for partition in set(self.tasks) - partitions:
            dropped += len(self.tasks.pop(partition))
        for source in [source for source in self.offsets if source[1] not in partitions]:
            del self.offsets[source]  # what another worker handles now; the window stage has heard of it
        if self.shadow is not None:
            self.shadow.take_assignment(partitions, by_partition)
        for partition in sorted(partitions):
            recovered = by_partition.get(partition, {})
            task = self.tasks.get(partition)
            if task is None:
                self._task(partition, recovered)
            else:
                for request_id, entry in recovered.items():
                    task.take(request_id, entry)
        for partition, recovered in by_partition.items():
            if partition not in partitions:
                dropped += len(recovered)
        await self.stage.take(owns_facts, self._on_fatal)
        if self.ledger is not None:
            await self.ledger.take(owns_facts, self._on_fatal)
        return dropped

    def set_policy(self, policy: Policy) -> None:
        """Judge from now on by ``policy``; join state, timers and windows carry over."""
        self.policy = policy
        self.reducer.set_policy(policy)
        for task in self.tasks.values():
            task.joiner.set_policy(policy)
        self.stage.set_policy(policy)
        self.metrics.set_policy(policy)

    # -- for metrics ------------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Join state sizes over all tasks."""
        total: Counter[str] = Counter()
        for task in list(self.tasks.values()):
            total.update(task.joiner.pending())
        return dict(total)

    def watermark_ms(self) -> int | None:
        """The slowest task's watermark."""
        marks = [w for task in list(self.tasks.values()) if (w := task.joiner.watermark_ms) is not None]
        return min(marks) if marks else None

    def refused(self) -> int:
        return sum(task.joiner.stats.refused for task in self.tasks.values())
