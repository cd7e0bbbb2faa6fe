"""Soak: one ``dismon worker`` under steady load for ``--minutes``, restarted (SIGTERM) half-way.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 800]

Starts (or reuses) the local broker, simulates a scenario long enough for the whole run (faults of every
per-request rule at 1 %, spread over months of event time so join state expires as it goes), offers it at
``--rate`` events/s, samples the worker's resident memory, join state and throughput every 10 s, and at the
end compares the alerts topic with the scenario's ground truth. Memory should level off: join state is
bounded by the join window of event time, not by how long the worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import orjson
from bench_common import BENCH_ENV, KINDS, ROOT, create_topics, free_port, metric_sums, start_broker

sys.path.insert(0, ROOT)

from monitor.core.timeutil import format_ms
from monitor.replay.report import load_truth

TOPIC_OF = {"request": "requests", "response": "responses", "disposal": "disposals"}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Worker:
    def __init__(self, boot: str, prefix: str, policy: str, log: str, segment: str) -> None:
        self.port = free_port()
        self.log = open(log, "ab")  # noqa: SIM115 (the worker's output for its whole life; closed in stop())
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "worker",
                "--policy",
                policy,
                "--bootstrap-servers",
                boot,
                "--topic-prefix",
                prefix,
                "--group",
                f"{prefix}-g",
                "--metrics-port",
                str(self.port),
                "--changelog-segment",
                segment,
            ],
            cwd=ROOT,
            env=BENCH_ENV,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > 180 or self.process.poll() is not None:
                raise SystemExit("the worker did not become ready")
            time.sleep(0.2)
        self.ready_after = time.monotonic() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()


async def _offer(boot: str, prefix: str, lines: list[bytes], rate: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        for sent, line in enumerate(lines, 1):
            event = orjson.loads(line)
            await producer.send(f"{prefix}.{TOPIC_OF[event['type']]}", line, key=event["request_id"].encode())
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.05:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def _ticks(boot: str, prefix: str, partitions: int, at_ms: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=boot)
    await producer.start()
    try:
        for kind in KINDS:
            for partition in range(partitions):
                tick = {
                    "type": "disposal",
                    "request_id": f"tick-{kind}-{partition}",
                    "agreement_id": "tax-enforcement-2025",
                    "disposed_at": format_ms(at_ms),
                }
                await producer.send_and_wait(f"{prefix}.{kind}", orjson.dumps(tick), partition=partition)
    finally:
        await producer.stop()


async def _alert_keys(boot: str, prefix: str) -> set[tuple[str, str]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(f"{prefix}.alerts", bootstrap_servers=boot, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        keys: set[tuple[str, str]] = set()
        while batch := await consumer.getmany(timeout_ms=5000):
            for messages in batch.values():
                for message in messages:
                    alert = orjson.loads(message.value)
                    keys.add((alert["rule"], alert["request_id"] or alert["details"].get("key", "")))
        return keys
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=800, help="events offered per second (default 800)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep-log", metavar="PATH", help="copy the worker's log here at the end")
    parser.add_argument(
        "--changelog-segment",
        default="10m",
        metavar="DUR",
        help="the worker's --changelog-segment (default 10m, the worker's own default)",
    )
    args = parser.parse_args()
    boot = start_broker()
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    total_events = int(args.rate * args.minutes * 60)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "simulate",
                "--out",
                work,
                "--requests",
                str(total_events // 2),
                "--days",
                "150",
                "--fault",
                "all",
                "--fault-rate",
                "0.01",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        with gzip.open(f"{work}/events.jsonl.gz") as log:
            lines = log.read().splitlines()
        truth = load_truth(f"{work}/truth.json")
        create_topics(boot, prefix, args.partitions)
        policy = f"{work}/policy.toml"
        print(
            f"{len(lines):,} events (150 days of event time) offered at {args.rate:,}/s for {args.minutes:g} min; "
            f"broker {boot}; restart half-way"
        )
        print(f"{'t (s)':>6} {'RSS MiB':>8} {'events/s':>9} {'join entries':>13} {'lag':>7}")
        worker = Worker(boot, prefix, policy, f"{work}/worker.log", args.changelog_segment)
        first_ready = f"first start ready after {worker.ready_after:.1f} s"
        done = threading.Event()  # the offered load runs in its own thread and event loop

        def offer() -> None:
            asyncio.run(_offer(boot, prefix, lines, args.rate))
            done.set()

        threading.Thread(target=offer, daemon=True).start()
        started = time.monotonic()
        restarted = False
        samples: list[tuple[float, float]] = []
        last_events, last_t, base_events = 0.0, started, 0.0
        restart_note = ""
        while True:
            time.sleep(10)
            now = time.monotonic() - started
            metrics = metric_sums(worker.port)
            events = base_events + metrics.get("dismon_events_total", 0.0)
            rate = (events - last_events) / (time.monotonic() - last_t)
            last_events, last_t = events, time.monotonic()
            rss = _rss_mib(worker.process.pid)
            samples.append((now, rss))
            print(
                f"{now:>6.0f} {rss:>8.0f} {rate:>9,.0f} {metrics.get('dismon_join_entries', 0):>13,.0f} "
                f"{metrics.get('dismon_consumer_lag', 0):>7,.0f}",
                flush=True,
            )
            if not restarted and now >= args.minutes * 30:
                base_events = events
                worker.stop()
                worker = Worker(boot, prefix, policy, f"{work}/worker.log", args.changelog_segment)
                restarted = True
                restart_note = f"restart at {now:.0f} s: ready again after {worker.ready_after:.1f} s"
                print(f"       -- {restart_note} --", flush=True)
                last_events, last_t = base_events, time.monotonic()
            if done.is_set() and metrics.get("dismon_consumer_lag", 1) == 0:
                break
        elapsed = time.monotonic() - started
        asyncio.run(_ticks(boot, prefix, args.partitions, truth.until_ms))
        time.sleep(5)
        worker.stop()
        found = asyncio.run(_alert_keys(boot, prefix))
        if args.keep_log:
            shutil.copyfile(f"{work}/worker.log", args.keep_log)
    expected = set(truth.expected)
    second_half = [rss for t, rss in samples if t >= elapsed / 2 + 60]
    print(
        f"{len(lines):,} events in {elapsed:.0f} s ({len(lines) / elapsed:,.0f} events/s on average); {first_ready}; "
        f"{restart_note}"
    )
    if second_half:
        print(
            f"RSS after the restart: {min(second_half):.0f}..{max(second_half):.0f} MiB "
            f"(first sample {second_half[0]:.0f}, last {second_half[-1]:.0f})"
        )
    print(
        f"findings against the ground truth: expected {len(expected):,}, found {len(expected & found):,}, "
        f"missed {len(expected - found):,}, unexpected {len(found - expected):,}"
    )


if __name__ == "__main__":
    main()
