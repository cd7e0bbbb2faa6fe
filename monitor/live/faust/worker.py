"""``dismon worker``: the live daemon's Faust side. With monitor/live/faust/batching.py, the only modules that
know Faust.

Faust keeps the consumer group (membership, co-partitioned assignment, offset commits, flow control in
rebalances) and the join table (a changelog-backed in-memory table, and its recovery). Everything the worker
does with the messages is in :class:`~monitor.live.pipeline.Pipeline`, which knows nothing of Faust: this
module builds the app, hands it each fetched batch, calls its timers and checkpoints, and tells it about
rebalances. SIGHUP reloads the policy file; a broken file is refused and the policy in force stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import faust
from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore
from faust.tables import TableManager
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge

from monitor.config import load_policy
from monitor.core.findings import SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.policy import Policy
from monitor.errors import DismonError, UsageError
from monitor.live import entries
from monitor.live.faust.batching import BatchApp, BatchConsumer
from monitor.live.kafka import (
    TOPIC_KINDS,
    KafkaSettings,
    changelog_topic_config,
    check_group,
    ensure_topics,
    watch_broker,
)
from monitor.live.ledger import LedgerHost
from monitor.live.local_state import LocalState
from monitor.live.pipeline import Pipeline, Writers
from monitor.live.recovery import recover
from monitor.live.settings import WorkerSettings
from monitor.live.shadow import Shadow
from monitor.live.standby import Standby
from monitor.live.tasks import share_of
from monitor.live.topic_writer import TopicWriter
from monitor.outputs import endpoints
from monitor.outputs.alertmanager import AlertmanagerSink
from monitor.outputs.alerts import FindingSender
from monitor.outputs.ledger import load_signing_key
from monitor.outputs.metrics import LedgerMetrics, Metrics

log = logging.getLogger("dismon.worker")


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

    def _dumps(self, obj: Any) -> bytes:
        return entries.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return entries.decode(s)


codecs.register("dismon-entry", _EntryCodec())


class _JoinStore(MemoryStore[str, JoinEntry]):
    """Faust's in-memory store, except that it recovers newly assigned changelog partitions itself.

    Faust's recovery hands every changelog record through its event machinery (about 10,000 records/s). Here
    each newly active partition is recovered before Faust's recovery starts (monitor/live/recovery.py: from
    the standby's copy or the local state, then the changelog after it), into :attr:`recovered`, which the
    pipeline takes. :meth:`persisted_offset` tells Faust's recovery to start where that read ended: it then
    has nothing, or only what was written meanwhile, left to read (:meth:`apply_changelog_batch`). A
    partition kept through a rebalance is complete already (only this worker wrote to it, and it checkpoints
    before a rebalance), so the recovery is told to start at its end too.
    """

    kafka: KafkaSettings | None = None  # set by the worker before the first rebalance
    local: LocalState | None = None  # --state-dir
    standby: Standby | None = None  # --standby

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recovered: dict[int, dict[str, JoinEntry]] = {}  # by partition, until the pipeline takes them
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
        owned = {tp.partition for tp in actives}
        if self.local is not None:
            for partition in self.local.held() - owned:
                self.local.close(partition)
        if self.kafka is not None and actives:
            ends = await self.app.consumer.highwaters(*actives)  # the next offset of each partition
            read_to = {tp: ends[tp] - 1 for tp in self._complete if ends.get(tp)}
            todo = {tp.partition: ends.get(tp) or 0 for tp in actives - self._complete}
            if todo:
                recovered = await self._recover(changelog, todo)
                read_to |= {TP(changelog, p): offset for p, offset in recovered.items()}
            self._read_to = read_to
            # Complete: what was empty, kept, or read to its end; Faust's recovery reads whatever is not.
            self._complete = {tp for tp in actives if read_to.get(tp, -1) >= ends.get(tp, 0) - 1}
        if self.standby is not None:  # after the copies of what this worker now owns were taken
            self.standby.follow(set(range(self.table.partitions or 0)) - owned)

    async def _recover(self, changelog: str, ends: dict[int, int]) -> dict[int, int]:
        assert self.kafka is not None
        copies = {} if self.standby is None else {p: self.standby.take(p) for p in ends}
        last, tables = await recover(
            self.kafka, changelog, ends, self.local, {p: copy for p, copy in copies.items() if copy is not None}
        )
        self.recovered |= tables
        return last

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Faust's recovery of what was written after the worker's own read: into the same tables."""
        for event in batch:
            table = self.recovered.setdefault(event.message.partition, {})
            key = to_key(event.key)
            if event.message.value is None:
                table.pop(key, None)
            else:
                table[key] = to_value(event.value)

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


class _TableManager(TableManager):
    """Faust's table manager without the second it sleeps before it starts (for tables added late; the worker
    adds its one table before the app starts): a restarted worker joins its group a second sooner."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class FencedError(Exception):
    """Another process joined the group with this worker's --instance-id."""


class _FencedFilter(logging.Filter):
    """Static membership: when another process joins with this worker's instance id, the broker gives it this
    worker's place, and this worker's next heartbeat or offset commit finds its member id unknown. aiokafka
    (which predates KIP-345's FENCED_INSTANCE_ID) logs that and then joins again, which would take the place
    back and start the two taking turns. The filter raises in that log call instead, before the join: the
    heartbeat or commit ends with the error, and ``on_fenced`` stops the worker."""

    def __init__(self, on_fenced: Callable[[], None]) -> None:
        super().__init__()
        self._on_fenced: Callable[[], None] | None = on_fenced

    @staticmethod
    def _unknown_member(message: str) -> bool:
        return "local member_id was not recognized" in message or (
            message.startswith("OffsetCommit failed") and "UnknownMemberIdError" in message
        )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._unknown_member(message):
            if self._on_fenced is not None:
                on_fenced, self._on_fenced = self._on_fenced, None
                on_fenced()
            raise FencedError(message)  # out of the heartbeat or commit, before it resets and joins again
        return True


class Health:
    """What /readyz reports: partitions assigned and their join state recovered, and the broker answering."""

    def __init__(self) -> None:
        self.ready = False
        self.broker_up = True

    def set_broker_up(self, up: bool) -> None:
        self.broker_up = up

    def not_ready(self) -> str | None:
        """Why /readyz says 503, or None when ready."""
        if not self.broker_up:
            return "broker unreachable"
        return None if self.ready else "recovering"


def _app(settings: WorkerSettings) -> BatchApp:
    kafka = settings.kafka
    return BatchApp(
        kafka.group,
        broker=f"kafka://{kafka.bootstrap_servers}",
        broker_credentials=_faust_credentials(kafka),
        store="memory://",
        TableManager=_TableManager,
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
        # A stable member identity (--instance-id): a worker restarted within the session timeout gets its
        # partitions back without a rebalance, and a second process with the same identity fences the first.
        consumer_group_instance_id=settings.instance_id,
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,  # alerts by the hundred per batch; 16 KiB made each send wait
        broker_max_poll_records=1000,  # events in one batch
        # Standby replicas of the join table kept a worker that had been through a rebalance from ever
        # consuming again (faust-streaming 0.15); a taken-over partition is recovered from the changelog.
        table_standby_replicas=0,  # see above
    )


_TABLE = "join-state"  # its changelog: <group>-join-state-changelog


def _join_table(app: faust.App, settings: WorkerSettings) -> _JoinTable:
    # Faust never writes this table: the pipeline writes its changelog, each task to its partition
    # (monitor/live/tasks.py). use_partitioner spares Faust's write path the need for a current event.
    table = _JoinTable(
        app,
        name=_TABLE,
        default=None,
        key_type=str,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        use_partitioner=True,
        extra_topic_configs=changelog_topic_config(settings.changelog_segment_ms),
    )
    app.tables.add(table)
    cast(_JoinStore, table.data).kafka = settings.kafka
    return table


def _local_state(settings: WorkerSettings) -> LocalState | None:
    if settings.state_dir is None:
        return None
    try:
        return LocalState(Path(settings.state_dir), f"{settings.kafka.group}-{_TABLE}-changelog")
    except UsageError as exc:
        if not settings.state_dir_default:
            raise
        log.warning("%s; this worker keeps no local state, and a restart reads the whole changelog", exc)
        return None


def build_app(
    settings: WorkerSettings,
    policy: Policy,
    hasher: SubjectHasher,
    registry: CollectorRegistry,
    listener: socket.socket,
    shadow_policy: Policy | None = None,
    local: LocalState | None = None,
) -> faust.App:
    kafka = settings.kafka
    app = _app(settings)
    table = _join_table(app, settings)
    crashes: list[asyncio.Future[Any]] = []  # held so the loop does not collect them while they run

    def fatal(exc: BaseException) -> None:
        log.critical("a write failed after aiokafka's retries; stopping the worker", exc_info=exc)
        crashes.append(asyncio.ensure_future(app.crash(exc)))

    producer = lambda: app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: E731
    if local is not None and local.topic != table.changelog_topic_name:
        raise AssertionError(f"the local state is of {local.topic}, the join table's changelog is another")
    store = cast(_JoinStore, table.data)
    store.local = local
    if settings.standby:
        standby = store.standby = Standby(kafka, table.changelog_topic_name)
        app.task(standby.run)
        Gauge(
            "dismon_standby_request_ids",
            "Request ids held in the warm standby copies of the partitions other workers own",
            registry=registry,
        ).set_function(lambda: float(standby.held()))
    writers = Writers(
        alerts=TopicWriter(producer, kafka.topic("alerts")),
        deadletter=TopicWriter(producer, kafka.topic("deadletter"), fatal),
        changelog=TopicWriter(producer, table.changelog_topic_name, fatal, None if local is None else local.append),
        facts=TopicWriter(producer, kafka.facts_topic),
        windows=TopicWriter(producer, kafka.windows_topic),
    )
    metrics = Metrics(registry, policy)
    alertmanager = (
        None
        if settings.alertmanager_url is None
        else AlertmanagerSink(
            settings.alertmanager_url,
            registry,
            hold_ms=settings.alertmanager_hold_ms,
            runbook_base=settings.runbook_base,
        )
    )
    now_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731  # the one wall clock, handed in
    shadow = (
        None
        if shadow_policy is None
        else Shadow(
            shadow_policy,
            hasher,
            TopicWriter(producer, kafka.topic("shadow-alerts")),
            FindingSender(now_ms, metrics, shadow=True).encode,
            share_of(settings.max_join_entries, settings.partitions),
        )
    )
    ledger = None
    if settings.ledger_key is not None:
        ledger = LedgerHost(
            kafka,
            load_signing_key(settings.ledger_key, "the ledger key"),
            TopicWriter(producer, kafka.ledger_topic, fatal),
            TopicWriter(producer, kafka.ledger_checkpoints_topic, fatal),
            settings.ledger_interval_ms,
            now_ms,
            LedgerMetrics(registry),
        )
    pipeline = Pipeline(
        settings,
        policy,
        hasher,
        writers,
        FindingSender(now_ms, metrics, alertmanager),
        metrics,
        now_ms,
        fatal,
        shadow,
        ledger,
        local,
    )
    health = Health()
    Gauge("dismon_broker_up", "1 while the Kafka cluster answers metadata requests", registry=registry).set_function(
        lambda: float(health.broker_up)
    )

    if settings.instance_id is not None:

        def fenced() -> None:
            log.critical(
                "another worker joined the group with the same --instance-id %r and took this one's place: "
                "stopping (two workers must never share an identity)",
                settings.instance_id,
            )
            crashes.append(asyncio.ensure_future(app.crash(FencedError(settings.instance_id))))

        logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(_FencedFilter(fenced))
    _connect(app, table, pipeline, health, settings, registry, listener, now_ms)
    if alertmanager is not None:
        app.task(alertmanager.run)
    return app


def _connect(
    app: BatchApp,
    table: _JoinTable,
    pipeline: Pipeline,
    health: Health,
    settings: WorkerSettings,
    registry: CollectorRegistry,
    listener: socket.socket,
    now_ms: Callable[[], int],
) -> None:
    """Faust's hooks into the pipeline: batches, timers, checkpoints, rebalances, SIGHUP, the endpoints."""
    kafka = settings.kafka
    metrics = pipeline.metrics

    def consumer_lag() -> dict[str, int]:
        """Messages behind the high watermark, summed per input topic over the assigned partitions."""
        lag: dict[str, int] = {}
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic not in pipeline.sources:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            handled = pipeline.offsets.get((tp.topic, tp.partition))
            # Nothing handled since the partition was assigned: it is where the group's commit left it.
            done = handled + 1 if handled is not None else cast(Any, consumer)._committed_offset.get(tp) or 0
            lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - done, 0)
        return lag

    metrics.track_state(
        pipeline.pending,
        pipeline.watermark_ms,
        consumer_lag,
        capacity=settings.max_join_entries,
        wall_s=lambda: now_ms() / 1000,
    )
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
    app.batch_topics = pipeline.sources | {kafka.facts_topic}
    assigned = asyncio.Event()  # set once a rebalance's assignment is taken (take_assignment)

    async def consume(messages: list[Any]) -> None:
        await assigned.wait()  # Faust resumes the flow before it calls on_recover
        try:
            await pipeline.handle(messages)
        except Exception as exc:
            # Bad input never gets here (it is dead-lettered); this is a bug. Stop the whole worker loudly
            # rather than keep a half-dead daemon: the supervisor restarts it.
            log.critical("the detector failed; stopping the worker", exc_info=exc)
            await app.crash(exc)
            raise

    app.on_batch = consume
    app.on_checkpoint = pipeline.checkpoint

    @app.timer(interval=1.0)
    async def tick() -> None:
        if health.ready:  # not while partitions move: timers must not touch entries this worker may not own
            await pipeline.tick()

    @app.timer(interval=app.checkpoint_interval)
    async def checkpoint() -> None:
        consumer = app.consumer
        if isinstance(consumer, BatchConsumer) and health.ready:
            await consumer.checkpoint()

    @app.task
    async def watch_cluster() -> None:
        await watch_broker(kafka, health.set_broker_up)

    async def on_revoked(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        health.ready = False  # until the rebalance's recovery is done (on_recover)
        assigned.clear()
        # A tick cut short by the rebalance may have left changes: into the changelog before another
        # worker recovers from it.
        await pipeline.checkpoint()
        if pipeline.ledger is not None:
            await pipeline.ledger.checkpoint()  # signed as the ledger is, before another worker writes on
        await app.producer.flush()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode's signal types are too narrow

    def reload_policy() -> None:
        """SIGHUP: load the policy file again, and the shadow policy's; a broken one is refused and the one in
        force stays."""
        for name, judge in (("policy", pipeline), ("shadow policy", pipeline.shadow)):
            if judge is None:
                continue
            path = judge.policy.path
            try:
                policy = load_policy(path)
            except DismonError as exc:
                log.error("%s reload refused, the one in force (version %s) stays: %s", name, judge.policy.version, exc)
                continue
            judge.set_policy(policy)
            log.warning(
                "%s reloaded from %s: version %s, %d agreement(s)", name, path, policy.version, len(policy.agreements)
            )

    @app.task
    async def serve_http() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_policy)
        await endpoints.serve(registry, health.not_ready, listener)

    store = cast(_JoinStore, table.data)

    async def take_assignment() -> list[tuple[str, int]]:
        now = sorted((tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in pipeline.sources)
        owns_facts = any(tp.topic == kafka.facts_topic for tp in app.consumer.assignment())
        # What the recovery put into the table's store moves into the tasks, by partition.
        recovered, store.recovered = store.recovered, {}
        forgotten = await pipeline.take_assignment({p for _t, p in now}, owns_facts, recovered)
        if forgotten:
            log.info("forgot %d join entries of partitions now owned by other workers", forgotten)
        assigned.set()
        return now

    @table.on_recover
    async def on_recover() -> None:
        """After the changelog was replayed into the table: its entries go to their tasks, timers re-armed."""
        now = await take_assignment()
        health.ready = True
        log.info("assigned %s; %d join entries held", now, sum(len(task) for task in pipeline.tasks.values()))

    async def on_rebalance_complete(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        # Sent on every rebalance, also when nothing had to be recovered (then on_recover is not called),
        # e.g. after the broker came back and the group re-formed with the same assignment.
        await take_assignment()
        health.ready = True

    app.on_rebalance_complete.connect(on_rebalance_complete)  # type: ignore[arg-type]


class _Worker(faust.Worker):
    """Faust's worker without its terminal spinner. The spinner's log handler sets the root logger to DEBUG,
    which made every ``log.debug`` in Faust and aiokafka (several per message) build a log record only for
    the handler to drop it: a tenth of the worker's time (py-spy)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


async def _prepare(settings: WorkerSettings, shadow: bool) -> dict[str, int]:
    """Before joining the group: the topics exist and are co-partitioned, and the group is this pipeline's."""
    ledger = settings.ledger_key is not None
    counts = await ensure_topics(settings.kafka, settings.partitions, shadow=shadow, ledger=ledger)
    await check_group(settings.kafka)
    return counts


#: The cyclic garbage collector's thresholds in the worker (Python's default: 700, 10, 10). Each event leaves
#: a few dozen short-lived objects (its decoded JSON, its digest), none of them in a cycle. At the default a
#: young collection ran every few dozen events, and the older ones, which walk the whole join state, often
#: enough that together they took 7 to 10 % of the worker's throughput (bench/peer_bench.py). Cycles are still
#: collected, only less often.
GC_THRESHOLDS = (50_000, 20, 100)


def run(settings: WorkerSettings, policy: Policy, hasher: SubjectHasher, shadow_policy: Policy | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the exit code. ``shadow_policy``: a candidate judging the
    same events, its findings to the shadow-alerts topic only."""
    listener = endpoints.listen(settings.metrics_host, settings.metrics_port)  # first: a port in use stops us here
    local = None
    try:
        local = _local_state(settings)  # a directory in use by another worker stops us here too
        if local is not None:
            local.preload()  # while the topics are checked and the group joined
        counts = asyncio.run(_prepare(settings, shadow_policy is not None))
    except BaseException:
        listener.close()
        if local is not None:
            local.close_all()
        raise
    settings = dataclasses.replace(settings, partitions=next(iter(counts.values())))
    gc.set_threshold(*GC_THRESHOLDS)
    app = build_app(settings, policy, hasher, CollectorRegistry(), listener, shadow_policy, local)
    worker = _Worker(app, loglevel=os.environ.get("DISMON_LOG_LEVEL", "WARNING"), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
