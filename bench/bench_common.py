"""What the live benchmarks share: the local broker, free ports, topics and the worker's metrics."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KINDS = ("requests", "responses", "disposals")
BENCH_ENV = {**os.environ, "DISMON_SUBJECT_KEY": "bench-key-0123456789abcdef"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker() -> str:
    """The local broker (started, or reused if running); its bootstrap address."""
    result = subprocess.run(
        ["bash", os.path.join(ROOT, "deploy/local/kafka.sh"), "start"], check=True, capture_output=True, text=True
    )
    return result.stdout.strip().splitlines()[-1]


def create_topics(boot: str, prefix: str, partitions: int, alerts_append_time: bool = False) -> None:
    """The worker's topics; with ``alerts_append_time`` the broker stamps each alert with the time it appended
    it (``LogAppendTime``), so a reader can tell when an alert reached the topic however late it reads it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=boot)
        await admin.start()
        stamped = {"message.timestamp.type": "LogAppendTime"} if alerts_append_time else {}
        try:
            await admin.create_topics(
                [
                    NewTopic(f"{prefix}.{k}", partitions, 1, topic_configs=stamped if k == "alerts" else {})
                    for k in (*KINDS, "alerts", "deadletter")
                ]
            )
        finally:
            await admin.close()

    asyncio.run(create())


def metric_sums(port: int) -> dict[str, float]:
    """The worker's /metrics, each metric summed over its labels ({} when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def http_status(url: str) -> int | None:
    """The HTTP status of a GET (None when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def dismon(*args: str) -> tuple[float, str]:
    """Run a ``dismon`` command as a user would (a fresh process, the bench key); its wall time and stdout.
    A command that fails raises RuntimeError with the end of its stderr."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "monitor.cli", *args], env=BENCH_ENV, cwd=ROOT,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"dismon {args[0]} exited with {result.returncode}: {result.stderr[-2000:]}")
    return time.perf_counter() - started, result.stdout


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """--events and --cache: the irs-ice-2025 log the replay, report and policy-diff benchmarks share."""
    parser.add_argument("--events", type=int, default=1_280_000, help="events in the log (default 1,280,000)")
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="where the generated log is kept")


def irs_ice_log(cache: str, events: int) -> str:
    """The directory of the irs-ice-2025 scenario of ``events`` events under ``cache`` (bench/replay_bench.py's
    log), generated on first use."""
    directory = os.path.join(cache, f"irs-ice-{events}")
    if not os.path.exists(os.path.join(directory, "policy.toml")):
        dismon("simulate", "--scenario", "irs-ice-2025", "--requests", str(events // 2), "--out", directory)
    return directory
