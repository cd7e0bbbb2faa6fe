"""What the live benchmarks share: the local broker, free ports, topics and the worker's metrics."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
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
