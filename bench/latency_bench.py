"""Detection latency of the live worker: a disclosing response produced -> its alert on the alerts topic.

    .venv/bin/python bench/latency_bench.py [--rate 1000] [--seconds 30]

Starts (or reuses) the local broker and one ``dismon worker`` on fresh topics, then offers ``--rate``
events per second (request/response pairs, every response disclosing an address for a request whose
address is "Failed to Provide", so every pair raises incomplete_request_disclosure) and reports the
p50/p99/max latency from producing each response to its alert reaching the alerts topic: the broker
stamps each alert when it appends it (the topic is created with ``LogAppendTime``), so the benchmark's
own reading, in the same process as its producer, does not count. ``--timeline`` also prints the
latency by the second the response was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import orjson
from bench_common import BENCH_ENV, ROOT, create_topics, free_port, start_broker


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _pair(request_id: str) -> tuple[bytes, bytes]:
    request = {
        "type": "request",
        "request_id": request_id,
        "agreement_id": "tax-enforcement-2025",
        "requester": {"agency": "ICE", "unit": "ERO Atlanta", "signatory": "ICE Director"},
        "submitted_at": _now(),
        "subject": {
            "name": {"first": "Ana", "last": "Garcia"},
            "address": {"street": "Failed to Provide", "city": "Atlanta", "state": "GA", "zip": "30301"},
        },
        "legal_basis": {"statute": "8 U.S.C. 1231", "case_id": "A123456789", "removal_order": True},
    }
    response = {
        "type": "response",
        "request_id": request_id,
        "agreement_id": "tax-enforcement-2025",
        "responder": {"agency": "IRS"},
        "responded_at": _now(),
        "match": {"status": "matched", "score": 0.97, "matched_on": ["name", "address"]},
        "disclosed": {"address": {"street": "9 Elm Court", "city": "Atlanta", "state": "GA", "zip": "30302"}},
    }
    return orjson.dumps(request), orjson.dumps(response)


async def _measure(boot: str, prefix: str, rate: int, seconds: int) -> list[tuple[float, float]]:
    """(seconds into the run the response was sent, latency in seconds) of every alert read back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    sent: dict[str, float] = {}
    latencies: list[tuple[float, float]] = []
    consumer = AIOKafkaConsumer(
        f"{prefix}.alerts", bootstrap_servers=boot, auto_offset_reset="latest", group_id=None, fetch_max_wait_ms=5
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=0)
    await producer.start()
    pairs = rate * seconds // 2

    async def read() -> None:
        while len(latencies) < pairs:
            batch = await consumer.getmany(timeout_ms=100)
            for messages in batch.values():
                for message in messages:
                    assert message.timestamp_type == 1, "alerts topic not stamped with LogAppendTime"
                    request_id = orjson.loads(message.value)["request_id"]
                    if request_id in sent:
                        at = sent.pop(request_id)
                        latencies.append((at - started, message.timestamp / 1000 - at))

    reader = asyncio.create_task(read())
    started = time.time()
    for index in range(pairs):
        request_id = f"lat-{index}"
        request, response = _pair(request_id)
        await producer.send(f"{prefix}.requests", request, key=request_id.encode())
        sent[request_id] = time.time()  # wall clock, as the broker's append time
        await producer.send(f"{prefix}.responses", response, key=request_id.encode())
        await asyncio.sleep(max(0.0, started + (index + 1) * 2 / rate - time.time()))  # yields even when behind
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader, timeout=max(60, seconds))
    await producer.stop()
    await consumer.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="events offered per second (default 1,000)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--timeline", action="store_true", help="also print p50/p99 by second of the run")
    args = parser.parse_args()
    boot = start_broker()
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    create_topics(boot, prefix, 4, alerts_append_time=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [sys.executable, "-m", "monitor.cli", "simulate", "--out", work, "--requests", "10"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "worker",
                "--policy",
                f"{work}/policy.toml",
                "--bootstrap-servers",
                boot,
                "--topic-prefix",
                prefix,
                "--group",
                f"{prefix}-g",
                "--metrics-port",
                str(port),
            ],
            cwd=ROOT,
            env=BENCH_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            latencies = asyncio.run(_measure(boot, prefix, args.rate, args.seconds))
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    expected = args.rate * args.seconds // 2
    if not latencies:
        raise SystemExit("no alert came back")
    if args.timeline:
        by_second: dict[int, list[float]] = {}
        for at, latency in latencies:
            by_second.setdefault(int(at), []).append(latency * 1000)
        for second, values in sorted(by_second.items()):
            print(
                f"  second {second:3d}: {len(values):5,} alerts, p50 {statistics.median(values):6.0f} ms, "
                f"p99 {_p99(sorted(values)):6.0f} ms"
            )
    ms = sorted(latency * 1000 for _at, latency in latencies)
    print(
        f"offered {args.rate:,} events/s for {args.seconds} s: {len(ms):,} of {expected:,} alerts back; "
        f"latency p50 {statistics.median(ms):.0f} ms, p99 {_p99(ms):.0f} ms, max {ms[-1]:.0f} ms"
    )


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    main()
