"""The project's own broker script starts a real Kafka that a real client can use (the base of the worker tests)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.live.conftest import Worker
from tests.services import free_port

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka.sh"


def test_broker_round_trip(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"

    async def round_trip() -> list[tuple[bytes | None, bytes | None]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"event-{i}".encode(), key=f"r{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=f"smoke-{topic}"
        )
        await consumer.start()
        try:
            received: list[tuple[bytes | None, bytes | None]] = []
            while len(received) < 10:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "no messages within 5 s"
                received += [(m.key, m.value) for messages in batch.values() for m in messages]
            return received
        finally:
            await consumer.stop()

    received = asyncio.run(round_trip())
    assert sorted(value or b"" for _, value in received) == sorted(f"event-{i}".encode() for i in range(10))


def test_a_worker_starts_on_a_brand_new_cluster(
    kafka_bootstrap: str, scenario: tuple[Path, str], tmp_path: Path
) -> None:
    """A cluster that has never seen a consumer group answers "coordinator not available" until it has made
    its offsets topic; the worker waits for it instead of exiting."""
    del kafka_bootstrap  # the shared broker must not be the one under test, but the jars are fetched
    directory, prefix = scenario
    env = {**os.environ, "DISMON_KAFKA_STATE": str(tmp_path / "kafka"), "KAFKA_PORT": str(free_port())}
    started = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        worker = Worker(started.stdout.strip().splitlines()[-1], prefix, directory / "policy.toml", tmp_path / "w.log")
        assert worker.stop() == 0
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, capture_output=True, timeout=120)


def test_ledger_topics_are_created_to_keep_everything_and_refused_when_they_would_delete(kafka_bootstrap: str) -> None:
    import pytest

    from monitor.errors import UsageError
    from monitor.live.kafka import LEDGER_TOPIC_CONFIG, KafkaSettings, ensure_topics

    async def configs(topic: str) -> dict[str, str]:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            (answer,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            return {entry[0]: entry[1] for entry in answer.resources[0][4]}
        finally:
            await admin.close()

    async def create(topic: str, partitions: int, config: dict[str, str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
        finally:
            await admin.close()

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    asyncio.run(ensure_topics(kafka, 2, ledger=True))
    for topic in (kafka.ledger_topic, kafka.ledger_checkpoints_topic):
        kept = asyncio.run(configs(topic))
        assert {name: kept[name] for name in LEDGER_TOPIC_CONFIG} == LEDGER_TOPIC_CONFIG
    asyncio.run(ensure_topics(kafka, 2, ledger=True))  # as created: accepted again

    for partitions, config, named in (
        (1, {"retention.ms": "604800000"}, "retention.ms=604800000"),
        (1, {"cleanup.policy": "compact"}, "cleanup.policy=compact"),
        (2, {"retention.ms": "-1", "retention.bytes": "-1"}, "2 partitions"),
    ):
        other = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
        asyncio.run(create(other.ledger_topic, partitions, config))
        with pytest.raises(UsageError, match=named):
            asyncio.run(ensure_topics(other, 2, ledger=True))
