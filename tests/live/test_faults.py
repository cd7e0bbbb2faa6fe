"""Infrastructure faults on the real local broker: the broker goes away for 30 seconds mid-stream."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from monitor.cli import main
from tests.live.conftest import (
    Worker,
    consume_all,
    produce,
    topics_and_expected,
)
from tests.services import REPO

KAFKA_SH = REPO / "deploy/local/kafka.sh"


def _broker(*command: str) -> str:
    result = subprocess.run(["bash", str(KAFKA_SH), *command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def test_broker_down_for_30_seconds_mid_stream(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "1500",
                "--fault",
                "all",
                "--seed",
                "13",
                "--fault-rate",
                "0.03",
            ]
        )
        == 0
    )
    prefix = f"t{uuid.uuid4().hex[:10]}"
    ticks, expected = topics_and_expected(kafka_bootstrap, tmp_path, prefix, capsys)
    with gzip.open(tmp_path / "events.jsonl.gz") as log:
        lines = log.read().splitlines()
    half = len(lines) // 2
    for part, chunk in (("first", lines[:half]), ("second", lines[half:])):
        (tmp_path / f"{part}.jsonl").write_bytes(b"\n".join(chunk) + b"\n")

    def publish(part: str) -> None:
        assert (
            main(
                [
                    "replay",
                    "--to-kafka",
                    "--policy",
                    str(tmp_path / "policy.toml"),
                    "--bootstrap-servers",
                    kafka_bootstrap,
                    "--topic-prefix",
                    prefix,
                    str(tmp_path / f"{part}.jsonl"),
                ]
            )
            == 0
        )
        capsys.readouterr()

    publish("first")
    worker = Worker(
        kafka_bootstrap, prefix, tmp_path / "policy.toml", tmp_path / "worker.log", env={"DISMON_LOG_LEVEL": "INFO"}
    )
    try:
        worker.wait_for_events(half)
        _broker("stop")
        down_at = time.monotonic()
        try:
            worker._wait(lambda: worker._get("/readyz") == 503, 30, "unready while the broker is down")
            time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
            assert worker.process.poll() is None  # it waits for the broker; it does not die
        finally:
            assert _broker("start", "--keep-data") == kafka_bootstrap  # the same broker, its data kept
        worker._wait(lambda: worker._get("/readyz") == 200, 120, "ready again after the broker is back")
        publish("second")
        asyncio.run(produce(kafka_bootstrap, ticks))
        worker.wait_for_events(len(lines) + len(ticks), seconds=120)
        time.sleep(2)
    finally:
        assert worker.stop() == 0
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected
    worker_log = (tmp_path / "worker.log").read_text()
    assert "unreachable; not ready" in worker_log and "reachable again" in worker_log
