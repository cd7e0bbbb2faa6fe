"""Hostile input through the live worker, an unreachable Alertmanager, and no personal data in any output."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.cli import main
from monitor.replay.report import load_truth
from tests.corpus import CORPUS
from tests.live.conftest import (
    KINDS,
    PARTITIONS,
    STARTED,
    Worker,
    closing_ticks,
    consume_all,
    create_topics,
    produce,
    publish,
)
from tests.pii import leaks, personal_values
from tests.services import free_port, metric_sum


async def _produce_large(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_hostile_input_through_the_worker_and_no_personal_data_anywhere(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "600",
                "--fault",
                "all",
                "--seed",
                "11",
                "--fault-rate",
                "0.05",
            ]
        )
        == 0
    )
    prefix = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    published = publish(tmp_path, kafka_bootstrap, prefix, capsys)
    hostile = [
        (f"{prefix}.{KINDS[i % 3]}", f"bad-{i}".encode(), payload)
        for i, (payload, _reason) in enumerate(CORPUS.values())
    ]
    asyncio.run(_produce_large(kafka_bootstrap, hostile))
    valid_hostile = sum(1 for _p, reason in CORPUS.values() if reason is None)
    ticks = closing_ticks(
        prefix, load_truth(str(tmp_path / "truth.json")).until_ms
    )  # every partition's clock to the end
    asyncio.run(produce(kafka_bootstrap, ticks))

    # Replay the same scenario with dead letters to a file: the expected alert ids, and more outputs to scan.
    replay_alerts, replay_dead = tmp_path / "replay-alerts.jsonl", tmp_path / "replay-dead.jsonl"
    with gzip.open(tmp_path / "events.jsonl.gz") as log:
        (tmp_path / "with-ticks.jsonl").write_bytes(log.read() + b"".join(v + b"\n" for *_r, v in ticks))
    assert (
        main(
            [
                "replay",
                "--policy",
                str(tmp_path / "policy.toml"),
                "--alerts-out",
                str(replay_alerts),
                "--dead-letter",
                str(replay_dead),
                str(tmp_path / "with-ticks.jsonl"),
            ]
        )
        == 0
    )
    replay_stderr = capsys.readouterr().err
    expected = {orjson.loads(line)["alert_id"] for line in replay_alerts.read_bytes().splitlines()}

    # Alertmanager configured but down: findings must still reach the alerts topic, failures counted.
    dead_alertmanager = f"http://127.0.0.1:{free_port()}"
    assert main(["ledger", "keygen", "--private", str(tmp_path / "key"), "--public", str(tmp_path / "pub")]) == 0
    worker = Worker(
        kafka_bootstrap,
        prefix,
        tmp_path / "policy.toml",
        tmp_path / "worker.log",
        extra=("--alertmanager-url", dead_alertmanager, "--ledger-key", str(tmp_path / "key")),
        env={"DISMON_LOG_LEVEL": "INFO"},
    )
    try:
        worker.wait_for_events(published + valid_hostile + len(ticks))
        worker._wait(
            lambda: metric_sum(worker.metrics(), "dismon_alertmanager_push_failures_total") >= 2,
            30,
            "retrying Alertmanager",
        )
        exposition = worker.metrics()
    finally:
        assert worker.stop() == 0
        STARTED.clear()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    ids = {a["alert_id"] for _, a in alerts}
    assert expected <= ids  # every finding of the scenario, although Alertmanager never answered
    assert all(a["request_id"] == "r1" for _, a in alerts if a["alert_id"] not in expected)  # the corpus' own
    assert metric_sum(exposition, "dismon_alertmanager_alerts_pushed_total") == 0

    # Every invalid message is dead-lettered with its specific reason and position, never its payload.
    dead = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.deadletter"))
    by_key = {key: record for key, record in dead}
    for i, (name, (payload, reason)) in enumerate(CORPUS.items()):
        if reason is None:
            assert f"bad-{i}".encode() not in by_key, name
            continue
        record = by_key[f"bad-{i}".encode()]
        assert record["reason"] == reason, name
        assert record["topic"] == f"{prefix}.{KINDS[i % 3]}" and 0 <= record["partition"] < PARTITIONS
        assert record["size"] == len(payload) and "payload" not in record
    assert len(dead) == sum(1 for _p, reason in CORPUS.values() if reason is not None)

    # No personal data in any output: alerts and dead letters (topic and files), logs, metrics, summaries.
    values = personal_values(tmp_path / "events.jsonl.gz")
    assert len(values) > 100
    ledger = [asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.{t}")) for t in ("ledger", "ledger-checkpoints")]
    assert ledger[0] and ledger[1]  # the accounting was kept: there was something to scan
    outputs: dict[str, Any] = {
        "ledger topics": b"\n".join(orjson.dumps(r) for records in ledger for _, r in records).decode(),
        "alerts topic": b"\n".join(orjson.dumps(a) for _, a in alerts).decode(),
        "dead-letter topic": b"\n".join(orjson.dumps(r) for _, r in dead).decode(),
        "worker log": (tmp_path / "worker.log").read_text(errors="replace"),
        "/metrics": exposition,
        "replay alerts": replay_alerts.read_text(),
        "replay dead letters": replay_dead.read_text(),
        "replay summary": replay_stderr,
    }
    assert len(outputs["worker log"]) > 1000  # INFO logging was on: there was something to scan
    for where, text in outputs.items():
        assert not leaks(text, values), f"personal data in {where}: {leaks(text, values)[:5]}"
