"""``dismon worker``: the live daemon. With monitor/live/faust/batching.py, the only modules that know Faust.

    requests ─┐                   fetched batches
    responses ├─► Faust consumer ───────────────► Detector (the same core as replay) ─► <prefix>.alerts (key: alert_id)
    disposals ┘        │                              │  └─ join state: a changelog-backed Faust table
                       │                              └─ window facts ─► <group>-window-facts ─► window stage (on
                       │                                   the worker with its one partition) ─► <prefix>.alerts
                       └─ invalid events ─► <prefix>.deadletter (reason, source topic/partition/offset)

Each fetched batch goes through the detector event by event; its findings go to the alerts topic and what
it gave the windowed rules to the window-facts topic (each fact with its input partition and offset, and the
worker's watermark for each of its partitions). The worker that has the facts topic's one partition runs the
window stage over the facts of every worker, counting each (input partition, offset) once. Every quarter
second (a checkpoint), once those are on the broker, the window stage's state goes to its topic, then the
join-state changes to the table's changelog, and only then are the batches' offsets acked. The watermark
comes from :class:`~monitor.live.clock.PartitionClock` (the minimum over the worker's partitions, advanced on
wall-clock time while idle), checked after every event and once a second. Delivery is at least once:
after a crash the events since the last committed offset are processed again, and findings may be sent
twice with the same ``alert_id``; consumers de-duplicate on it.
SIGHUP reloads the policy file; a broken file is refused and the policy in force stays.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any, cast

import faust
import msgspec
import orjson
from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge

from monitor.config import load_policy
from monitor.core.detector import DEFAULT_MAX_JOIN_ENTRIES, Detector
from monitor.core.events import DEFAULT_MAX_EVENT_BYTES, FUTURE_TOLERANCE_MS, Invalid, decode_timed
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.policy import Policy
from monitor.core.timeutil import format_ms
from monitor.core.windows.stage import WindowStage
from monitor.errors import DismonError, InputError
from monitor.live.clock import PartitionClock
from monitor.live.faust.batching import BatchApp, BatchConsumer
from monitor.live.kafka import (
    DEFAULT_CHANGELOG_SEGMENT_MS,
    TOPIC_KINDS,
    KafkaSettings,
    changelog_topic_config,
    ensure_topics,
    read_last_record,
    read_partitions,
    watch_broker,
)
from monitor.live.topic_writer import TopicWriter
from monitor.live.writeback import WriteBack
from monitor.outputs import endpoints
from monitor.outputs.alertmanager import DEFAULT_HOLD_MS, DEFAULT_RUNBOOK_BASE, AlertmanagerSink
from monitor.outputs.metrics import Metrics

log = logging.getLogger("dismon.worker")
MAX_DEAD_LETTER_PAYLOAD = 256 * 1024  # bytes of an invalid message kept with --dead-letter-payload


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    kafka: KafkaSettings
    partitions: int = 4  # for topics the worker creates
    allowed_lateness_ms: int = 10 * 60_000
    idle_ms: int | None = 30_000  # None: never advance the watermark on wall-clock time
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    session_timeout_s: float = 30.0
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    alertmanager_url: str | None = None  # also push findings there
    alertmanager_hold_ms: int = DEFAULT_HOLD_MS
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    max_join_entries: int | None = DEFAULT_MAX_JOIN_ENTRIES
    dead_letter_payload: bool = False  # keep the offending bytes (base64) in dead-letter records: personal data!
    changelog_segment_ms: int = DEFAULT_CHANGELOG_SEGMENT_MS  # see kafka_io.changelog_topic_config


def _faust_credentials(kafka: KafkaSettings) -> Any:
    context = kafka.ssl_context()
    if kafka.sasl_mechanism:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    return context


class _EntryCodec(codecs.Codec):
    """Join entries in the changelog: msgpack via msgspec (compact, and typed on the way back)."""

    _encoder = msgspec.msgpack.Encoder()
    _decoder = msgspec.msgpack.Decoder(JoinEntry)

    def _dumps(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self._decoder.decode(s)


codecs.register("dismon-entry", _EntryCodec())


class _JoinStore(MemoryStore[str, JoinEntry]):
    """Faust's in-memory store, except that it reads newly assigned changelog partitions itself, in bulk.

    Faust's recovery hands every changelog record through its event machinery (about 10,000 records/s,
    so a restart took half a minute after a few minutes of traffic). Here each newly active partition is
    read with one consumer and decoded with msgspec before Faust's recovery starts, and
    :meth:`persisted_offset` tells the recovery to start where this read ended: it then has nothing,
    or only what was written meanwhile, left to read. A partition kept through a rebalance is complete
    in the store already (only this worker wrote to it, and it checkpoints before a rebalance), so the
    recovery is told to start at its end too.
    """

    kafka: KafkaSettings | None = None  # set by the worker before the first rebalance

    def __post_init__(self) -> None:
        super().__post_init__()
        self._complete: set[TP] = set()  # active partitions whose whole changelog is in the store
        self._read_to: dict[TP, int] = {}  # this rebalance: the offset up to which the store is complete

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self._read_to = {}
        changelog = self.table.changelog_topic.get_topic_name()
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic == changelog}
        self._complete &= actives - newly_assigned
        if self.kafka is None or not actives:
            return
        ends = await self.app.consumer.highwaters(*actives)  # the next offset of each partition
        read_to = {tp: ends[tp] - 1 for tp in self._complete if ends.get(tp)}
        todo = sorted(tp.partition for tp in actives - self._complete if ends.get(tp))
        if todo:
            started, records = time.monotonic(), 0
            data, key_partition, decode = self.data, self._key_partition, _EntryCodec._decoder.decode

            def apply(partition: int, key: bytes | None, value: bytes | None) -> None:
                nonlocal records
                records += 1
                if key is None:
                    return
                request_id = key.decode()
                if value is None:
                    data.pop(request_id, None)
                    key_partition.pop(request_id, None)
                else:
                    data[request_id] = decode(value)
                    key_partition[request_id] = partition

            last = await read_partitions(self.kafka, changelog, todo, apply)
            read_to |= {TP(changelog, partition): offset for partition, offset in last.items()}
            log.info(
                "join state: read %d changelog records of partitions %s in %.1f s",
                records,
                todo,
                time.monotonic() - started,
            )
        self._read_to = read_to
        # Complete: what was empty, kept, or read to its end; Faust's recovery reads whatever is not.
        self._complete = {tp for tp in actives if read_to.get(tp, -1) >= ends.get(tp, 0) - 1}

    def persisted_offset(self, tp: TP) -> int | None:
        return self._read_to.get(tp)


class _JoinTable(faust.Table[str, JoinEntry]):
    """Faust picks changelog serializers from model types (json for anything else): request ids as raw
    UTF-8 (the same bytes as the input topics' keys, so the partitioner agrees) and entries as msgpack."""

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is str else "dismon-entry"

    def _new_store_by_url(self, url: Any) -> Any:
        return _JoinStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


WINDOWS_KEY = b"windows"


class WindowFacts(msgspec.Struct, array_like=True):
    """A record on ``<group>-window-facts``: what one batch of a worker's partitions gave the windowed rules
    (each fact with the input partition and offset of its event) and that worker's watermark."""

    marks: list[tuple[str, int]]  # input partition ("topic:partition") -> the sending worker's watermark
    facts: list[tuple[str, int, tuple[Any, ...]]]  # (input partition, offset, fact)


class WindowsSnapshot(msgspec.Struct):
    """The record on ``<group>-window-state``: the window stage as of a checkpoint, up to which offset of
    each input partition it has counted, and the watermarks it has heard."""

    counted: dict[str, int]
    marks: dict[str, int]
    stage: bytes


_ENCODER = msgspec.msgpack.Encoder()
_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(WindowsSnapshot)
_FACTS_DECODER = msgspec.msgpack.Decoder(WindowFacts)


class Runtime:
    """Everything the agent needs, wired once: detector, clock, sinks and metrics."""

    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        policy: Policy,
        hasher: SubjectHasher,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(registry, policy)
        self.registry = registry
        self.app = app
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset handled
        # The window stage runs on the worker that has the one partition of <group>-window-facts; every worker
        # sends it the facts of its own partitions (see handle()).
        self.stage = WindowStage(policy)
        self.stage_owned = False
        self.counted: dict[str, int] = {}  # input partition -> highest offset whose facts the stage has counted
        self.marks: dict[str, int] = {}  # input partition -> watermark heard from the worker that has it
        self._facts: list[tuple[str, int, tuple[Any, ...]]] = []  # this batch's, to send
        self._source = ("", 0)  # input partition and offset of the event being handled
        self._marks_sent: int | None = None
        self._assigned = asyncio.Event()  # set once a rebalance's assignment is taken (take_assignment)
        self.assigned: list[tuple[str, int]] = []  # input topic partitions, sorted
        self._last_snapshot = b""
        self._crash: asyncio.Future[Any] | None = None  # held so the loop does not collect it while it runs
        # Batches, timer ticks and checkpoints take turns: a checkpoint writes state as of whole batches.
        self._turn = asyncio.Lock()
        # use_partitioner: timers change entries outside any event; the producer's partitioner (murmur2 of the
        # request id, like the producers of the input topics) then keeps each key in its source partition.
        self.table = _JoinTable(
            app,
            name="join-state",
            default=None,
            key_type=str,
            beacon=app.tables.beacon,
            partitions=settings.partitions,
            use_partitioner=True,
            extra_topic_configs=changelog_topic_config(settings.changelog_segment_ms),
        )
        app.tables.add(self.table)
        # The table's in-memory store, which its own bulk read (and Faust's recovery, for anything left) fills.
        # The worker reads and writes it directly and writes the changelog itself (monitor/live/topic_writer.py);
        # Faust's in-memory store forgets on a rebalance only the keys it recovered itself, so the worker drops
        # those of partitions given away (take_partitions).
        join_store = cast(_JoinStore, self.table.data)
        join_store.kafka = settings.kafka
        self.store = cast(dict[str, JoinEntry], join_store.data)
        producer = lambda: app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: E731
        self.changelog = TopicWriter(producer, self.table.changelog_topic_name, self._write_failed)
        self.alert_writer = TopicWriter(producer, settings.kafka.topic("alerts"))
        self.windows_writer = TopicWriter(producer, settings.kafka.windows_topic)
        self.facts_writer = TopicWriter(producer, settings.kafka.facts_topic)
        self._owned: set[int] = set()  # partition numbers assigned at the last rebalance
        # The detector's writes wait here and reach the store and its changelog at the next checkpoint.
        self.join_state: WriteBack[JoinEntry] = WriteBack(self.store)
        self.detector = Detector(
            policy,
            hasher,
            settings.allowed_lateness_ms,
            store=self.join_state,
            external_watermark=True,
            observer=self.metrics,
            max_entries=settings.max_join_entries,
            window_sink=self._on_fact,
        )
        self.clock = PartitionClock(settings.allowed_lateness_ms, settings.idle_ms, lambda: time.time_ns() // 1_000_000)
        kafka = settings.kafka
        self.sources = frozenset(kafka.topic(kind) for kind in TOPIC_KINDS)
        self.deadletter = app.topic(kafka.topic("deadletter"), key_serializer="raw", value_serializer="raw")
        self.ready = False  # partitions assigned and their join state recovered
        self.broker_up = True  # the last metadata request to the cluster succeeded
        Gauge(
            "dismon_broker_up", "1 while the Kafka cluster answers metadata requests", registry=registry
        ).set_function(lambda: float(self.broker_up))
        self.alertmanager = (
            None
            if settings.alertmanager_url is None
            else AlertmanagerSink(
                settings.alertmanager_url,
                registry,
                hold_ms=settings.alertmanager_hold_ms,
                runbook_base=settings.runbook_base,
            )
        )
        self.metrics.track_state(
            self.detector.pending,
            lambda: self.detector.watermark_ms,
            self.consumer_lag,
            capacity=settings.max_join_entries,
        )
        self._refused_logged = (0, 0.0)  # (count, monotonic time) of the last "join state full" log line

    def consumer_lag(self) -> dict[str, int]:
        """Messages behind the high watermark, summed per input topic over the assigned partitions."""
        lag: dict[str, int] = {}
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic not in self.sources:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = self.offsets.get((tp.topic, tp.partition), -1) + 1
            lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - done, 0)
        return lag

    async def handle(self, messages: list[Any]) -> None:
        """One fetched batch, in order: input events through the detector one by one, window facts (on the
        worker that has them) through the stage; then the findings and the facts to their topics."""
        await self._assigned.wait()  # Faust resumes the flow before it calls on_recover
        async with self._turn:
            not_after_ms = time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS
            findings: list[Finding] = []
            facts_topic = self.settings.kafka.facts_topic
            for message in messages:
                if message.topic == facts_topic:
                    findings += self._apply_facts(message.value)
                    continue
                source = (message.topic, message.partition)
                self.offsets[source] = message.offset
                raw = message.value
                decoded = (
                    Invalid("empty") if raw is None else decode_timed(raw, self.settings.max_event_bytes, not_after_ms)
                )
                if isinstance(decoded, Invalid):
                    await self._dead_letter(decoded.reason, message)
                    continue
                event_ms, event = decoded
                self.clock.observe(source, event_ms)
                self._source = (f"{message.topic}:{message.partition}", message.offset)
                findings += self.detector.process(event, event_ms)
                findings += self._advance()  # after every event, as the replay does
            await self._send_alerts(findings)

    def _on_fact(self, fact: tuple[Any, ...]) -> None:
        self._facts.append((*self._source, fact))

    async def _send_facts(self) -> None:
        """The facts since the last checkpoint, with this worker's watermark for each of its partitions, to the
        window stage; returns once the broker has them (just before the join state is written: checkpoint())."""
        watermark = self.clock.watermark()
        if not self._facts and (watermark is None or watermark == self._marks_sent):
            return
        marks = [] if watermark is None else [(f"{topic}:{partition}", watermark) for topic, partition in self.assigned]
        record = _ENCODER.encode(WindowFacts(marks=marks, facts=self._facts))
        self._facts, self._marks_sent = [], watermark
        await asyncio.gather(*await self.facts_writer.write([(b"facts", record)]))

    def _apply_facts(self, raw: bytes | None) -> list[Finding]:
        """A record of window facts: each counted once (by input partition and offset), then the stage's
        watermark moved to the smallest heard for any input partition."""
        if raw is None or not self.stage_owned:
            return []
        try:
            batch = _FACTS_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.error("unreadable record on %s skipped: %s", self.settings.kafka.facts_topic, exc)
            return []
        found: list[Finding] = []
        counted, before = self.counted, dict(self.counted)
        for source, offset, fact in batch.facts:
            if offset > before.get(source, -1):  # not counted before (a batch handled again after a crash)
                found += self.stage.apply(fact)
                counted[source] = max(counted.get(source, -1), offset)
        for source, mark in batch.marks:
            if mark > self.marks.get(source, mark - 1):
                self.marks[source] = mark
        if len(self.marks) >= len(self.sources) * self.settings.partitions:
            found += self.stage.advance_to(min(self.marks.values()))
        return found

    async def tick(self) -> None:
        """Once a second: let the watermark move on a quiet stream (and say so if the join state is full)."""
        if not self.ready:
            return  # partitions are moving: timers must not touch entries this worker may no longer own
        async with self._turn:
            await self._send_alerts(self._advance())
        refused, (logged, at) = self.detector.stats.refused, self._refused_logged
        if refused > logged and time.monotonic() - at >= 60:
            log.error(
                "join state full (%d request ids, --max-join-entries): %d events of new request ids not "
                "joined so far; joined rules cannot judge them",
                len(self.store),
                refused,
            )
            self._refused_logged = (refused, time.monotonic())

    def _advance(self) -> list[Finding]:
        watermark = self.clock.watermark()
        if watermark is None:
            return []
        return list(self.detector.advance_to(watermark))

    async def _send_alerts(self, findings: list[Finding]) -> None:
        """Findings to the alerts topic; returns once the broker has them."""
        if not findings:
            return
        now_ms = time.time_ns() // 1_000_000
        records = []
        for finding in findings:
            self.metrics.finding(finding, now_ms)
            if self.alertmanager is not None:
                self.alertmanager.submit(finding, now_ms)
            records.append((finding.alert_id.encode(), orjson.dumps(finding.to_alert(now_ms))))
        await asyncio.gather(*await self.alert_writer.write(records))

    async def checkpoint(self) -> None:
        """Make durable what the batches and ticks since the last checkpoint did (their alerts are on the
        broker already): their window facts, the window stage's state, if this worker runs it, and the
        join-state changes. Their offsets are acked after.

        Both states remember what was raised, so neither may reach the broker before the alerts (a crash in
        between would lose those alerts for good; this way round it can only send one twice, with the same
        ``alert_id``). The facts go out before the join state: an event the join state already holds gives
        no facts when it is handled again after a crash. And they go out only here, just before it, not with
        each batch: facts counted while their join state is not yet written can be counted again, or not
        at all, when the events are handled again after a crash, because which of a request and its
        disclosing response completes the join then depends on how the partitions interleave (a joined
        disclosure's fact goes with the event that completed it). The window for that is now the moment
        between the two writes, where it was the whole quarter second of batches."""
        async with self._turn:
            await self._send_facts()
            if self.stage_owned and self.stage.active:
                snapshot = _ENCODER.encode(
                    WindowsSnapshot(counted=self.counted, marks=self.marks, stage=self.stage.snapshot())
                )
                if snapshot != self._last_snapshot:
                    await asyncio.gather(*await self.windows_writer.write([(WINDOWS_KEY, snapshot)]))
                    self._last_snapshot = snapshot
            changes = self.join_state.flush()
            if changes:
                encode = _EntryCodec._encoder.encode
                await self.changelog.write(
                    (key.encode(), None if value is None else encode(value)) for key, value in changes.items()
                )

    async def take_window_stage(self, owned: bool) -> None:
        """After a rebalance: on gaining the window-facts partition, take back the stage's last snapshot; on
        losing it, drop the stage (its new owner takes the snapshot back)."""
        if owned == self.stage_owned:
            return
        self.stage = WindowStage(self.detector.policy)
        self.counted, self.marks, self._last_snapshot = {}, {}, b""
        self.stage_owned = owned
        if owned and self.stage.active:
            await self._take_back_windows()

    async def _take_back_windows(self) -> None:
        from aiokafka.errors import KafkaError

        topic = self.settings.kafka.windows_topic
        try:
            raw = await read_last_record(self.settings.kafka, topic)
        except KafkaError as exc:
            log.critical("cannot read the windowed state from %s: %s; stopping", topic, exc)
            await self.app.crash(exc)
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

    def _write_failed(self, exc: BaseException) -> None:
        log.critical("join-state changelog write failed after aiokafka's retries; stopping the worker", exc_info=exc)
        self._crash = asyncio.ensure_future(self.app.crash(exc))

    async def _dead_letter(self, reason: str, message: Any) -> None:
        self.metrics.dead_letter(reason)
        record = {
            "reason": reason,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "size": len(message.value or b""),
            "detected_at": format_ms(time.time_ns() // 1_000_000),
        }
        if self.settings.dead_letter_payload and message.value:
            # Only on request (--dead-letter-payload), and only here on the dead-letter topic: it may be personal.
            kept = bytes(message.value[:MAX_DEAD_LETTER_PAYLOAD])
            record |= {
                "payload_b64": base64.b64encode(kept).decode(),
                "payload_truncated": len(message.value) > len(kept),
            }
        await self.deadletter.send(key=message.key, value=orjson.dumps(record))

    def set_broker_up(self, up: bool) -> None:
        self.broker_up = up

    def not_ready(self) -> str | None:
        """Why /readyz says 503, or None when ready."""
        if not self.broker_up:
            return "broker unreachable"
        return None if self.ready else "recovering"

    def reload_policy(self) -> None:
        """SIGHUP: load the policy file again; a broken one is refused and the one in force stays."""
        path = self.detector.policy.path
        try:
            policy = load_policy(path)
        except DismonError as exc:
            log.error(
                "policy reload refused, the policy in force (version %s) stays: %s", self.detector.policy.version, exc
            )
            return
        self.detector.set_policy(policy)
        self.stage.set_policy(policy)
        self.metrics.set_policy(policy)
        log.warning(
            "policy reloaded from %s: version %s, %d agreement(s)", path, policy.version, len(policy.agreements)
        )

    async def take_partitions(self, partitions: set[int]) -> int:
        """After a rebalance: forget the entries of partitions given away; returns how many."""
        given_away, self._owned = self._owned - partitions, set(partitions)
        if not given_away:
            return 0  # (a pass over every key costs seconds at a million entries)
        numbers = await self.changelog.partitions()
        partition_of = self.changelog.partition_of
        stale = [key for key in self.store if partition_of(key.encode(), numbers) in given_away]
        for key in stale:
            del self.store[key]
        return len(stale)

    def restore_state(self) -> int:
        """After recovery: re-arm the timers of every entry this worker now owns."""
        for request_id, entry in self.store.items():
            self.detector.restore(request_id, entry)
        return len(self.store)


def build_app(
    settings: WorkerSettings,
    policy: Policy,
    hasher: SubjectHasher,
    registry: CollectorRegistry,
    listener: socket.socket,
) -> tuple[faust.App, Runtime]:
    kafka = settings.kafka
    app = BatchApp(
        kafka.group,
        broker=f"kafka://{kafka.bootstrap_servers}",
        broker_credentials=_faust_credentials(kafka),
        store="memory://",
        # Faust creates a data directory even for in-memory tables; keep it out of the working directory
        # (read-only in the container image).
        datadir=os.environ.get("DISMON_DATA_DIR", os.path.join(tempfile.gettempdir(), "dismon-faust")),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(settings.session_timeout_s / 10, 0.5),
        broker_rebalance_timeout=settings.session_timeout_s * 2,
        broker_commit_interval=1.0,
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,  # alerts by the hundred per batch; 16 KiB made each send wait
        broker_max_poll_records=1000,  # events in one batch
        # Standby replicas of the join table kept a worker that had been through a rebalance from ever
        # consuming again (faust-streaming 0.15); a taken-over partition is recovered from the changelog.
        table_standby_replicas=0,  # see above
    )
    runtime = Runtime(app, settings, policy, hasher, registry)
    # The input topics are subscribed, but not through an agent: the consumer hands each fetched batch to
    # consume() and acks it afterwards (monitor/live/faust/batching.py), which saves Faust's ~100 µs a message.
    app.topics.add(
        app.topic(
            *(kafka.topic(kind) for kind in TOPIC_KINDS),
            kafka.facts_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
    )
    app.batch_topics = runtime.sources | {kafka.facts_topic}

    async def consume(messages: list[Any]) -> None:
        try:
            await runtime.handle(messages)
        except Exception as exc:
            # Bad input never gets here (it is dead-lettered); this is a bug. Stop the whole worker loudly
            # rather than keep a half-dead daemon: the supervisor restarts it.
            log.critical("the detector failed; stopping the worker", exc_info=exc)
            await app.crash(exc)
            raise

    app.on_batch = consume
    app.on_checkpoint = runtime.checkpoint

    @app.timer(interval=1.0)
    async def tick() -> None:
        await runtime.tick()

    @app.timer(interval=app.checkpoint_interval)
    async def checkpoint() -> None:
        consumer = app.consumer
        if isinstance(consumer, BatchConsumer) and runtime.ready:
            await consumer.checkpoint()

    @app.task
    async def watch_cluster() -> None:
        await watch_broker(kafka, runtime.set_broker_up)

    async def on_revoked(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        runtime.ready = False  # until the rebalance's recovery is done (on_recover)
        runtime._assigned.clear()
        # A tick cut short by the rebalance may have left changes: into the changelog before another
        # worker recovers from it.
        await runtime.checkpoint()
        await app.producer.flush()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode's signal types are too narrow

    @app.task
    async def serve_http() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_policy)
        await endpoints.serve(runtime.registry, runtime.not_ready, listener)

    if runtime.alertmanager is not None:
        app.task(runtime.alertmanager.run)

    sources = {kafka.topic(kind) for kind in TOPIC_KINDS}

    async def take_assignment() -> list[tuple[str, int]]:
        assigned = sorted((tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in sources)
        runtime.clock.assign(assigned)
        runtime.assigned = assigned
        forgotten = await runtime.take_partitions({partition for _topic, partition in assigned})
        if forgotten:
            log.info("forgot %d join entries of partitions now owned by other workers", forgotten)
        await runtime.take_window_stage(any(tp.topic == kafka.facts_topic for tp in app.consumer.assignment()))
        runtime._assigned.set()
        return assigned

    @runtime.table.on_recover
    async def on_recover() -> None:
        """After the changelog was replayed into the table: re-arm the timers of every entry now owned."""
        assigned = await take_assignment()
        restored = runtime.restore_state()
        runtime.ready = True
        log.info("assigned %s; %d join entries restored", assigned, restored)

    async def on_rebalance_complete(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        # Sent on every rebalance, also when nothing had to be recovered (then on_recover is not called),
        # e.g. after the broker came back and the group re-formed with the same assignment.
        await take_assignment()
        runtime.ready = True

    app.on_rebalance_complete.connect(on_rebalance_complete)  # type: ignore[arg-type]

    return app, runtime


class _Worker(faust.Worker):
    """Faust's worker without its terminal spinner. The spinner's log handler sets the root logger to DEBUG,
    which made every ``log.debug`` in Faust and aiokafka (several per message) build a log record only for
    the handler to drop it: a tenth of the worker's time (py-spy)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def run(settings: WorkerSettings, policy: Policy, hasher: SubjectHasher) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the exit code."""
    from aiokafka.errors import KafkaError

    kafka = settings.kafka
    listener = endpoints.listen(settings.metrics_host, settings.metrics_port)  # first: a port in use stops us here
    try:
        counts = asyncio.run(ensure_topics(kafka, settings.partitions))
    except KafkaError as exc:
        listener.close()
        raise InputError(
            f"cannot use Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}"
            f"{', SASL ' + kafka.sasl_mechanism if kafka.sasl_mechanism else ''}): {exc}; the log line above gives "
            "the broker's reason (e.g. a wrong SASL user or password, an untrusted certificate, nothing listening)"
        ) from exc
    except BaseException:
        listener.close()
        raise
    settings = dataclasses.replace(settings, partitions=next(iter(counts.values())))
    app, _runtime = build_app(settings, policy, hasher, CollectorRegistry(), listener)
    worker = _Worker(app, loglevel=os.environ.get("DISMON_LOG_LEVEL", "WARNING"), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
