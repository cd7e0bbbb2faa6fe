"""The live worker's test harness: a worker process, topics, producing and consuming, replay's findings to
compare with."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.cli import main
from monitor.core.timeutil import format_ms
from monitor.replay.report import load_truth
from tests.conftest import POLICY_TOML, TEST_KEY, raw
from tests.services import free_port, metric_sum

PARTITIONS = 4
KINDS = ("requests", "responses", "disposals")
WINDOWED = {"daily_cap_exceeded", "oversized_batch", "disclosure_rate_spike", "disclosure_ratio_drift"}
#: The test policy without restrictions, and the same with the employer no longer permitted.
BASE = POLICY_TOML.split("[[agreement.restriction]]")[0]
NO_EMPLOYER = BASE.replace(
    'permitted_fields = ["address", "name", "employer"]', 'permitted_fields = ["address", "name"]'
)
assert NO_EMPLOYER != BASE
ENV = {**os.environ, "DISMON_SUBJECT_KEY": TEST_KEY.decode(), "PYTHONUNBUFFERED": "1"}


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


class Worker:
    """A ``dismon worker`` subprocess with short Kafka timeouts, and its /metrics."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        policy: Path,
        log: Path,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        group: str | None = "",
        state_dir: Path | None = None,
    ) -> None:
        """``group``: "" for a group of the test's own (``<prefix>-group``), None for the worker's default;
        ``state_dir``: the join state's local copy, by default one of the worker's own next to its log (a
        worker started in another's place gets that one's to restart in place)."""
        self.port = free_port()
        group_options = [] if group is None else ["--group", group or f"{prefix}-group"]
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "worker",
                "--policy",
                str(policy),
                "--bootstrap-servers",
                bootstrap,
                "--topic-prefix",
                prefix,
                *group_options,
                "--metrics-port",
                str(self.port),
                "--idle-after",
                "off",
                "--session-timeout",
                "6s",
                "--partitions",
                str(PARTITIONS),
                "--state-dir",
                str(state_dir or log.with_suffix(".state")),
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**ENV, **(env or {})},
        )
        STARTED.append(self.process)
        self._wait(lambda: self._get("/readyz") == 200, 60, "ready")

    def _get(self, path: str) -> int | str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as answer:
                return answer.read().decode() if path == "/metrics" else int(answer.status)
        except urllib.error.HTTPError as exc:  # 503 while not ready
            return int(exc.code)
        except OSError:
            return None

    def _wait(self, condition: object, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited with {self.process.returncode}"
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not {what} within {seconds} s")

    def metrics(self) -> str:
        text = self._get("/metrics")
        assert isinstance(text, str), "no /metrics"
        return text

    def events(self) -> int:
        text = self._get("/metrics")
        if not isinstance(text, str):
            return -1
        return int(sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("dismon_events_total")))

    def wait_for_events(self, count: int, seconds: float = 90) -> None:
        self._wait(lambda: self.events() >= count, seconds, f"through {count} events")

    def wait_caught_up(self, count: int, seconds: float = 90) -> None:
        """Through at least ``count`` events (events handled again after a restart count too, so this alone
        says little) and nothing left to read on its partitions; then a moment for the last batch's alerts."""

        def caught_up() -> bool:
            text = self._get("/metrics")
            return (
                isinstance(text, str)
                and metric_sum(text, "dismon_events_total") >= count
                and metric_sum(text, "dismon_consumer_lag") == 0
            )

        self._wait(caught_up, seconds, f"caught up after {count} events")
        time.sleep(3)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def employer_pair(prefix: str, request_id: str, minute: int) -> list[tuple[str, int | None, bytes, bytes]]:
    """A request and a response that discloses the employer (permitted under BASE, not under NO_EMPLOYER)."""
    at = f"2025-06-02T10:{minute:02d}:00Z"
    return [
        (f"{prefix}.requests", None, request_id.encode(), raw("request", request_id=request_id, submitted_at=at)),
        (
            f"{prefix}.responses",
            None,
            request_id.encode(),
            raw("response", request_id=request_id, responded_at=at, disclosed={"employer": "Acme"}),
        ),
    ]


def reloads_between_pairs(
    bootstrap: str, prefix: str, worker: Worker, path: Path, log: Path, good: str, broken: str, what: str
) -> None:
    """Employer pairs "under-a"; ``path`` rewritten to ``good`` and SIGHUP, "under-b"; rewritten to ``broken``
    and SIGHUP, "after-broken": each reload waits for its log line ("<what> reloaded from", "<what> reload
    refused"), and the worker must still run."""

    def reload(text: str, expect: str) -> None:
        path.write_text(text)
        worker.process.send_signal(signal.SIGHUP)
        worker._wait(lambda: expect in log.read_text(), 30, f"logging {expect!r}")

    asyncio.run(produce(bootstrap, employer_pair(prefix, "under-a", 1)))
    worker.wait_for_events(2)
    reload(good, f"{what} reloaded from")
    asyncio.run(produce(bootstrap, employer_pair(prefix, "under-b", 2)))
    worker.wait_for_events(4)
    reload(broken, f"{what} reload refused")
    asyncio.run(produce(bootstrap, employer_pair(prefix, "after-broken", 3)))
    worker.wait_for_events(6)
    time.sleep(1)
    assert worker.process.poll() is None  # a broken file never stops a running worker


async def create_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.{k}", PARTITIONS, 1) for k in (*KINDS, "alerts", "deadletter")])
    finally:
        await admin.close()


async def produce(bootstrap: str, records: Sequence[tuple[str, int | None, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20)
    await producer.start()
    try:
        for topic, partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, quiet_ms: int = 3000) -> list[tuple[bytes, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        out = []
        while batch := await consumer.getmany(timeout_ms=quiet_ms):
            out += [(m.key, orjson.loads(m.value)) for messages in batch.values() for m in messages]
        return out
    finally:
        await consumer.stop()


def closing_ticks(prefix: str, at_ms: int) -> list[tuple[str, int, bytes, bytes]]:
    """One event at ``at_ms`` on every input topic partition, so every partition's clock reaches it."""
    records = []
    for kind in KINDS:
        for partition in range(PARTITIONS):
            tick = raw(
                "disposal",
                request_id=f"tick-{kind}-{partition}",
                agreement_id="tax-enforcement-2025",
                disposed_at=format_ms(at_ms),
            )
            records.append((f"{prefix}.{kind}", partition, f"tick-{kind}-{partition}".encode(), tick))
    return records


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[tuple[Path, str]]:
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
                "8",
                "--fault-rate",
                "0.03",
            ]
        )
        == 0
    )
    yield tmp_path, f"t{uuid.uuid4().hex[:10]}"


def topics_and_expected(
    bootstrap: str, directory: Path, prefix: str, capsys: pytest.CaptureFixture[str]
) -> tuple[list[tuple[str, int, bytes, bytes]], set[str]]:
    """The prefix's topics, the ticks that close every partition at the scenario's end, and the alert ids a
    replay of the scenario with those ticks gives."""
    asyncio.run(create_topics(bootstrap, prefix))
    ticks = closing_ticks(prefix, load_truth(str(directory / "truth.json")).until_ms)
    return ticks, replay_ids(directory, ticks, capsys)


def scenario_lines(directory: Path) -> list[bytes]:
    """The scenario's events, a JSON line each."""
    return gzip.open(directory / "events.jsonl.gz").read().splitlines()


def replay_ids(
    directory: Path,
    ticks: list[tuple[str, int, bytes, bytes]],
    capsys: pytest.CaptureFixture[str],
    policy: Path | None = None,
) -> set[str]:
    """The alert ids a replay of the scenario and ``ticks`` gives, under its own policy or ``policy``; its
    alerts are left in replay-alerts.jsonl."""
    with_ticks = directory / "with-ticks.jsonl"
    with_ticks.write_bytes(gzip.open(directory / "events.jsonl.gz").read() + b"".join(v + b"\n" for *_r, v in ticks))
    alerts_file = directory / "replay-alerts.jsonl"
    policy = policy or directory / "policy.toml"
    assert main(["replay", "--policy", str(policy), "--alerts-out", str(alerts_file), str(with_ticks)]) == 0
    capsys.readouterr()
    return {orjson.loads(line)["alert_id"] for line in alerts_file.read_bytes().splitlines()}


def in_two_halves(
    bootstrap: str, directory: Path, prefix: str, capsys: pytest.CaptureFixture[str]
) -> tuple[set[str], list[tuple[str, int, bytes, bytes]], list[bytes], int]:
    """Topics, a tight daily cap, the replay's alert ids, and the scenario's events split into first.jsonl.gz
    and second.jsonl.gz: (expected ids, ticks, event lines, half)."""
    tight_daily_cap(directory)
    ticks, expected = topics_and_expected(bootstrap, directory, prefix, capsys)
    lines = scenario_lines(directory)
    half = len(lines) // 2
    for part, chunk in (("first", lines[:half]), ("second", lines[half:])):
        (directory / f"{part}.jsonl.gz").write_bytes(gzip.compress(b"\n".join(chunk) + b"\n"))
    return expected, ticks, lines, half


def tight_daily_cap(directory: Path, cap: int = 12) -> None:
    """A daily cap the scenario crosses on a few days, so windowed findings depend on counting every
    partition: two workers that each counted only their own would cross it later or never."""
    policy = directory / "policy.toml"
    lines = policy.read_text().splitlines(keepends=True)
    policy.write_text(
        "".join(
            f"max_disclosures_per_day = {cap}\n" if line.startswith("max_disclosures_per_day") else line
            for line in lines
        )
    )


def replayed_windowed(directory: Path) -> set[tuple[str, str, str, object]]:
    lines = (directory / "replay-alerts.jsonl").read_bytes().splitlines()
    return windowed_outcome(orjson.loads(line) for line in lines)


def windowed_outcome(alerts: Iterable[dict[str, Any]]) -> set[tuple[str, str, str, object]]:
    """Windowed findings with their status and observed value: a count taken twice, or lost, shows."""
    return {
        (a["rule"], a["alert_id"], a["status"], a["details"].get("observed"))
        for a in alerts
        if a["request_id"] is None and a["rule"] in WINDOWED
    }


def publish(directory: Path, bootstrap: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> int:
    assert (
        main(
            [
                "replay",
                "--to-kafka",
                "--policy",
                str(directory / "policy.toml"),
                "--bootstrap-servers",
                bootstrap,
                "--topic-prefix",
                prefix,
                str(directory / "events.jsonl.gz"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    return int(err.split("published ")[1].split(" events")[0].replace(",", ""))


def publish_lines(directory: Path, name: str, lines: list[bytes], boot: str, prefix: str) -> None:
    """Event lines to the prefix's topics through ``dismon replay --to-kafka``, as ``<name>.jsonl.gz``."""
    part = directory / f"{name}.jsonl.gz"
    part.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert main(["replay", "--to-kafka", "--policy", str(directory / "policy.toml"), "--bootstrap-servers", boot,
                 "--topic-prefix", prefix, str(part)]) == 0  # fmt: skip
