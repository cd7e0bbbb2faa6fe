"""Kafka settings and the plain-aiokafka chores around the worker: topics, and watching the cluster.

No Faust here: ``dismon replay --to-kafka`` and the tests use it without loading the stream engine.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from monitor.errors import BrokerError, UsageError

log = logging.getLogger("dismon.kafka")

TOPIC_KINDS = ("requests", "responses", "disposals")
# Only the last windowed state matters; segments roll hourly so that compaction can drop the older ones.
WINDOWS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
DEFAULT_CHANGELOG_SEGMENT_MS = 10 * 60_000


def changelog_topic_config(segment_ms: int) -> dict[str, str]:
    """Settings of the join-state changelog (Faust makes it compacted) when the worker creates it.

    A restart reads the changelog from its start. Kafka compacts only closed segments and keeps tombstones
    a day by default, so with the broker's default week-long segments a restart would read the whole
    history. Rolling segments every ``segment_ms`` and dropping tombstones after as long leaves about the
    live entries plus a few segments' worth of changes; a restart must read the log within ``segment_ms``
    (seconds, normally) or it could miss a tombstone and keep an entry that had expired."""
    return {"segment.ms": str(segment_ms), "delete.retention.ms": str(segment_ms), "min.cleanable.dirty.ratio": "0.5"}


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "disclosure"
    # The consumer group, and so the names of the group's own topics (join-state changelog, window facts and
    # state). Empty: "dismon-<topic prefix>", so pipelines of different prefixes on one cluster never share
    # state unless told to.
    group: str = ""
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        """Settings that cannot work are usage errors here, not a client error later (or a worker that never
        joins its group)."""
        for server in self.bootstrap_servers.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not server.strip() or (colon and (not host or not port.isdigit() or not 0 < int(port) < 65536)):
                raise UsageError(
                    f"not a broker address: {server.strip()!r} in {self.bootstrap_servers!r} "
                    "(expected HOST:PORT[,HOST:PORT...])"
                )
        if not self.group:
            object.__setattr__(self, "group", f"dismon-{self.topic_prefix}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise UsageError(
                f"--security-protocol {self.security_protocol} needs --sasl-mechanism, --sasl-username "
                "and --sasl-password (or $DISMON_SASL_MECHANISM, _USERNAME, _PASSWORD)"
            )

    def topic(self, kind: str) -> str:
        return f"{self.topic_prefix}.{kind}"

    @property
    def windows_topic(self) -> str:
        """The consumer group's own topic for its windowed rules' state (beside Faust's changelog topic,
        ``<group>-join-state-changelog``): one partition, compacted, the last record is the state."""
        return f"{self.group}-window-state"

    @property
    def ledger_topic(self) -> str:
        """The accounting of disclosures (monitor/live/ledger.py): one partition, kept forever."""
        return self.topic("ledger")

    @property
    def ledger_checkpoints_topic(self) -> str:
        return self.topic("ledger-checkpoints")

    @property
    def facts_topic(self) -> str:
        """The consumer group's topic of window facts: every worker sends what its partitions give the
        windowed rules; the worker that has its one partition counts them."""
        return f"{self.group}-window-facts"

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        try:
            return ssl.create_default_context(cafile=self.ssl_cafile)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"cannot load the CA file {self.ssl_cafile} for Kafka TLS: {exc}") from exc

    def client_options(self) -> dict[str, Any]:
        """aiokafka client keyword arguments for these settings."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options


P = ParamSpec("P")
R = TypeVar("R")


def broker_errors(
    call: Callable[Concatenate[KafkaSettings, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[KafkaSettings, P], Coroutine[Any, Any, R]]:
    """aiokafka's errors of ``call`` (a coroutine function taking the settings first) as :class:`BrokerError`,
    naming the cluster and how it was reached."""

    @functools.wraps(call)
    async def translated(kafka: KafkaSettings, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(kafka, *args, **kwargs)
        except KafkaError as exc:
            sasl = f", SASL {kafka.sasl_mechanism}" if kafka.sasl_mechanism else ""
            raise BrokerError(
                f"cannot use Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}{sasl}): {exc}; the log "
                "line above gives the broker's reason (e.g. a wrong SASL user or password, an untrusted "
                "certificate, nothing listening)"
            ) from exc

    return translated


async def watch_broker(kafka: KafkaSettings, on_change: Callable[[bool], None], every_s: float = 2.0) -> None:
    """Ask the cluster for metadata every few seconds and report whether it answers (``on_change``, called
    on every transition). Faust and aiokafka reconnect by themselves; this only makes an outage visible."""
    client = AIOKafkaClient(**kafka.client_options(), request_timeout_ms=5_000)
    bootstrapped, was_up = False, True
    try:
        while True:
            try:
                if not bootstrapped:
                    await asyncio.wait_for(client.bootstrap(), timeout=every_s * 2)
                    bootstrapped = True
                await asyncio.wait_for(client.fetch_all_metadata(), timeout=every_s * 2)
                up = True
            except (TimeoutError, KafkaError, OSError):
                up = False
            if up != was_up:
                (log.warning if up else log.error)(
                    "Kafka at %s is %s", kafka.bootstrap_servers, "reachable again" if up else "unreachable; not ready"
                )
                on_change(up)
                was_up = up
            await asyncio.sleep(every_s)
    finally:
        await client.close()


@broker_errors
async def ensure_topics(
    kafka: KafkaSettings, partitions: int, group_topics: bool = True, shadow: bool = False, ledger: bool = False
) -> dict[str, int]:
    """Create missing topics, and with ``group_topics`` the consumer group's own (with ``shadow`` the
    shadow-alerts topic too); returns the input topics' partition counts. Input topics that exist already
    must be co-partitioned (:class:`UsageError`, before anything is created); missing ones get their
    partition count, else ``partitions``."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = {t: len(p) for t, p in (await _partition_counts(admin)).items()}
        inputs = {kind: existing[kafka.topic(kind)] for kind in TOPIC_KINDS if kafka.topic(kind) in existing}
        if len(set(inputs.values())) > 1:
            raise UsageError(
                "input topics are not co-partitioned (requests, responses and disposals need the same "
                f"partition count): {inputs}"
            )
        count = next(iter(inputs.values()), partitions)
        if inputs and count != partitions:
            log.warning("input topics have %d partitions already: missing ones get as many, not %d", count, partitions)
        outputs = ("alerts", "deadletter", "shadow-alerts") if shadow else ("alerts", "deadletter")
        wanted = [kafka.topic(kind) for kind in (*TOPIC_KINDS, *outputs)]
        missing = [t for t in wanted if t not in existing]
        created = [NewTopic(t, num_partitions=count, replication_factor=1) for t in missing]
        if group_topics and kafka.windows_topic not in existing:
            created.append(
                NewTopic(
                    kafka.windows_topic, num_partitions=1, replication_factor=1, topic_configs=WINDOWS_TOPIC_CONFIG
                )
            )
        if group_topics and kafka.facts_topic not in existing:
            created.append(NewTopic(kafka.facts_topic, num_partitions=1, replication_factor=1))
        if ledger:
            ledger_topics = (kafka.ledger_topic, kafka.ledger_checkpoints_topic)
            await _check_ledger_topics(admin, [t for t in ledger_topics if t in existing], existing)
            created += [
                NewTopic(t, num_partitions=1, replication_factor=1, topic_configs=LEDGER_TOPIC_CONFIG)
                for t in ledger_topics
                if t not in existing
            ]
        if created:
            await admin.create_topics(created)
            await _wait_for_leaders(admin, {topic.name for topic in created})
            if missing:
                log.info("created topics %s with %d partitions", missing, count)
        return {kind: count for kind in TOPIC_KINDS}
    finally:
        await admin.close()


@broker_errors
async def check_group(kafka: KafkaSettings) -> None:
    """Refuse (:class:`UsageError`) a consumer group whose committed offsets are on topics other than this
    pipeline's: its join state and windows were built from another pipeline's input, and sharing them would
    suppress findings as already raised."""
    ours = {kafka.topic(kind) for kind in TOPIC_KINDS} | {kafka.facts_topic}
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    await admin.start()
    try:
        committed = await _retrying(lambda: admin.list_consumer_group_offsets(kafka.group))
    finally:
        await admin.close()
    foreign = sorted(t for t in {tp.topic for tp in committed} - ours if not t.startswith(f"{kafka.group}-"))
    if foreign:
        inputs = ", ".join(kafka.topic(kind) for kind in TOPIC_KINDS)
        raise UsageError(
            f"consumer group {kafka.group!r} holds state built from {', '.join(foreign)}, not from this worker's "
            f"input ({inputs}): give each pipeline its own group (--group, $DISMON_GROUP; the default is "
            "dismon-<topic prefix>)"
        )


#: The ledger's topics keep every record for good: a deleted entry would break the tree.
LEDGER_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


async def _check_ledger_topics(admin: Any, topics: list[str], existing: dict[str, int]) -> None:
    """Ledger topics that exist already must have one partition and keep every record (:class:`UsageError`)."""
    for topic in topics:
        if existing[topic] != 1:
            raise UsageError(f"{topic} has {existing[topic]} partitions: the ledger needs exactly one (one order)")
    if not topics:
        return
    answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    for answer in answers:
        for _error, _message, _type, topic, entries, *_rest in answer.resources:
            config = {entry[0]: entry[1] for entry in entries}
            deletes = [
                f"{name}={config.get(name)}"
                for name in ("retention.ms", "retention.bytes")
                if "delete" in str(config.get("cleanup.policy", "delete")) and config.get(name) not in ("-1", None)
            ]
            if "compact" in str(config.get("cleanup.policy", "")):
                deletes.append(f"cleanup.policy={config['cleanup.policy']}")
            if deletes:
                raise UsageError(
                    f"{topic} would delete ledger entries ({', '.join(deletes)}): set retention.ms=-1 and "
                    "retention.bytes=-1 with cleanup.policy=delete (kafka-configs.sh --alter), or use another prefix"
                )


async def _retrying(call: Callable[[], Coroutine[Any, Any, R]], timeout_s: float = 30.0) -> R:
    """``call()``, again while it fails with an error Kafka calls retriable: a fresh cluster answers
    "coordinator not available" until it has created its offsets topic, which the first group's first
    request starts."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or asyncio.get_running_loop().time() >= deadline:
                raise
            log.debug("retrying after %s", exc)
        await asyncio.sleep(0.5)


async def _wait_for_leaders(admin: Any, topics: set[str], timeout_s: float = 15.0) -> None:
    """Until every partition of the new ``topics`` has a leader: sending at once gets 'not leader' retries."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(list(topics))
        if all(
            not t.get("error_code") and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)


@broker_errors
async def read_last_record(kafka: KafkaSettings, topic: str) -> bytes | None:
    """The value of the last record of partition 0 of ``topic`` (None when it is empty)."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return None
        consumer.seek(partition, end - 1)
        records = (await consumer.getmany(partition, timeout_ms=10_000)).get(partition, [])
        if not records:
            raise KafkaError(f"the last record of {topic} could not be read within 10 s")
        value = records[-1].value
        return None if value is None else bytes(value)
    finally:
        await consumer.stop()


@broker_errors
async def read_partitions(
    kafka: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    on_record: Callable[[int, bytes | None, bytes | None], None],
    starts: Mapping[int, int] | None = None,
    timestamps: dict[int, int] | None = None,
) -> dict[int, int]:
    """Read ``partitions`` of ``topic`` from their start (or the offset ``starts`` gives) to their end as of now,
    handing each record's ``(partition, key, value)`` to ``on_record``; returns the offset of the last record
    read, by partition (partitions with nothing to read left out), and puts its timestamp in ``timestamps``."""
    starts = starts or {}
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*(tp for tp in tps if tp.partition not in starts))
        for tp in tps:
            if tp.partition in starts:
                consumer.seek(tp, starts[tp.partition])
        ends = await consumer.end_offsets(tps)
        last: dict[int, int] = {}
        pending = [tp for tp in tps if ends[tp] > starts.get(tp.partition, 0)]
        idle = 0
        while pending and idle < 3:  # three empty fetches in a row: what is left is not there to read
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        on_record(tp.partition, record.key, record.value)
                        last[tp.partition] = record.offset
                        if timestamps is not None:
                            timestamps[tp.partition] = record.timestamp
            pending = [tp for tp in pending if last.get(tp.partition, -1) < ends[tp] - 1]
        return last
    finally:
        await consumer.stop()


async def records_at(
    kafka: KafkaSettings, topic: str, offsets: Mapping[int, int]
) -> dict[int, tuple[bytes | None, bytes | None, int]]:
    """The ``(key, value, timestamp)`` of the record at each partition's offset in ``offsets``; partitions where
    that offset holds no record (compacted, deleted, not yet written) are left out."""
    found: dict[int, tuple[bytes | None, bytes | None, int]] = {}
    if not offsets:
        return found
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, partition): offset for partition, offset in offsets.items()}
        consumer.assign(list(tps))
        starts = await consumer.beginning_offsets(list(tps))
        ends = await consumer.end_offsets(list(tps))
        pending = [tp for tp, offset in tps.items() if starts[tp] <= offset < ends[tp]]
        for tp in pending:
            consumer.seek(tp, tps[tp])
        idle = 0
        while pending and idle < 3:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                if records and records[0].offset == tps[tp]:
                    found[tp.partition] = (records[0].key, records[0].value, records[0].timestamp)
                if records:
                    pending.remove(tp)
        return found
    finally:
        await consumer.stop()


async def _partition_counts(admin: Any) -> dict[str, list[int]]:
    metadata = await admin.describe_topics()
    return {t["topic"]: [p["partition"] for p in t["partitions"]] for t in metadata if not t.get("error_code")}


async def assign_all(consumer: AIOKafkaConsumer, topic: str, hint: str = "") -> list[TopicPartition]:
    """Assign ``consumer`` (started, in no group) every partition of ``topic``, from fresh metadata; a topic
    that does not exist is a :class:`UsageError` (``hint`` says what to do about it)."""
    partitions = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
    if not partitions:
        raise UsageError(f"topic {topic} does not exist{hint}")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return tps


@broker_errors
async def read_time_range(kafka: KafkaSettings, topic: str, from_ms: int, to_ms: int) -> list[bytes]:
    """The values of every partition of ``topic`` whose record timestamp (when the broker got it, for the
    alerts topic: when the worker raised the alert) is in ``[from_ms, to_ms)``, up to the end as of now."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await assign_all(consumer, topic)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
        remaining = {}
        for tp in tps:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                remaining[tp] = ends[tp]
        values: list[bytes] = []
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=10_000)
            if not batch:
                raise KafkaError(f"{topic} could not be read to its end within 10 s")
            for tp, records in batch.items():
                values += [bytes(r.value) for r in records if r.value is not None and r.timestamp < to_ms]
                if records[-1].offset + 1 >= remaining[tp] or records[-1].timestamp >= to_ms:
                    del remaining[tp]
        return values
    finally:
        await consumer.stop()
