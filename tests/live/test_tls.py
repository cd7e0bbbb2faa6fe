"""The worker over TLS + SASL/PLAIN (the local broker's second listener, with a CA made on the fly)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from monitor.cli import main
from tests.conftest import TEST_KEY
from tests.live.conftest import Worker
from tests.services import REPO, free_port

SECURE_KEYS = (
    "DISMON_SECURITY_PROTOCOL",
    "DISMON_SASL_MECHANISM",
    "DISMON_SASL_USERNAME",
    "DISMON_SASL_PASSWORD",
    "DISMON_SSL_CAFILE",
)


@pytest.fixture(scope="module")
def secure_env(kafka_bootstrap: str) -> dict[str, str]:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/local/kafka.sh"), "secure-env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["DISMON_SECURITY_PROTOCOL"] == "SASL_SSL" and Path(env["DISMON_SSL_CAFILE"]).is_file()
    return env


def test_worker_over_tls_and_sasl_finds_what_replay_finds(
    secure_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "300",
                "--fault",
                "all",
                "--seed",
                "4",
                "--fault-rate",
                "0.05",
            ]
        )
        == 0
    )
    for key, value in secure_env.items():
        monkeypatch.setenv(key, value)
    prefix = f"tls{uuid.uuid4().hex[:8]}"
    secure = secure_env["DISMON_BOOTSTRAP_SERVERS"]
    # Published over TLS + SASL too (replay --to-kafka reads the same DISMON_* settings).
    assert (
        main(
            [
                "replay",
                "--to-kafka",
                "--policy",
                str(tmp_path / "policy.toml"),
                "--topic-prefix",
                prefix,
                str(tmp_path / "events.jsonl.gz"),
            ]
        )
        == 0
    )
    published = int(capsys.readouterr().err.split("published ")[1].split(" events")[0].replace(",", ""))
    worker = Worker(
        secure, prefix, tmp_path / "policy.toml", tmp_path / "worker.log", env={k: secure_env[k] for k in SECURE_KEYS}
    )
    try:
        worker.wait_for_events(published)
    finally:
        assert worker.stop() == 0
    alerts_file = tmp_path / "replay.jsonl"
    assert (
        main(
            [
                "replay",
                "--policy",
                str(tmp_path / "policy.toml"),
                "--alerts-out",
                str(alerts_file),
                str(tmp_path / "events.jsonl.gz"),
            ]
        )
        == 0
    )
    immediate = {
        a["alert_id"]
        for a in map(orjson.loads, alerts_file.read_bytes().splitlines())
        if a["rule"] not in ("response_sla_breach", "orphan_disclosure", "disposal_overdue")
    }
    found = _secure_alert_ids(secure_env, prefix)
    assert immediate and immediate <= found  # the findings that need no timer (timers wait for the clock)


def _secure_alert_ids(env: dict[str, str], prefix: str) -> set[str]:
    import ssl

    from aiokafka import AIOKafkaConsumer

    async def read() -> set[str]:
        consumer = AIOKafkaConsumer(
            f"{prefix}.alerts",
            bootstrap_servers=env["DISMON_BOOTSTRAP_SERVERS"],
            auto_offset_reset="earliest",
            group_id=None,
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_plain_username=env["DISMON_SASL_USERNAME"],
            sasl_plain_password=env["DISMON_SASL_PASSWORD"],
            ssl_context=ssl.create_default_context(cafile=env["DISMON_SSL_CAFILE"]),
        )
        await consumer.start()
        try:
            ids: set[str] = set()
            while batch := await consumer.getmany(timeout_ms=3000):
                ids |= {orjson.loads(m.value)["alert_id"] for messages in batch.values() for m in messages}
            return ids
        finally:
            await consumer.stop()

    return asyncio.run(read())


@pytest.mark.parametrize("change", ["wrong password", "another CA", "not a CA file", "plaintext to the TLS port"])
def test_bad_credentials_give_a_clear_error_and_exit_2_not_a_hang(
    secure_env: dict[str, str], tmp_path: Path, change: str
) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--requests", "10"]) == 0
    env = {**secure_env, "DISMON_SUBJECT_KEY": TEST_KEY.decode()}
    if change == "wrong password":
        env["DISMON_SASL_PASSWORD"] = "not-the-password"
        expected = "Authentication failed"
    elif change == "another CA":  # a CA that did not sign the broker's certificate
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=other",
                "-keyout",
                str(tmp_path / "other.key"),
                "-out",
                str(tmp_path / "other.pem"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        env["DISMON_SSL_CAFILE"] = str(tmp_path / "other.pem")
        expected = "cannot use Kafka"
    elif change == "not a CA file":
        env["DISMON_SSL_CAFILE"] = str(REPO / "tests/schemas/servicemonitor.json")
        expected = "cannot load the CA file"
    else:
        env["DISMON_SECURITY_PROTOCOL"] = "PLAINTEXT"
        expected = "cannot use Kafka"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "worker",
            "--policy",
            str(tmp_path / "policy.toml"),
            "--metrics-port",
            str(free_port()),
            "--topic-prefix",
            f"bad{uuid.uuid4().hex[:6]}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
