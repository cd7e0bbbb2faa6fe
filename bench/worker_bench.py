"""Live-worker throughput on the local broker, next to Faust's and aiokafka's own ceilings.

    .venv/bin/python bench/worker_bench.py [--requests 100000] [--partitions 4]

Starts (or reuses) deploy/local/kafka.sh, publishes a simulated scenario into fresh topics once, then
measures, each in its own process, the rate at which these get through all of it:

* aiokafka:  a raw AIOKafkaConsumer reading the three input topics (no decoding);
* faust:     a Faust agent that does nothing with its events (Faust's per-event ceiling), as Faust
             configures its consumer and with dismon's shorter fetch wait (monitor/live/faust/batching.py);
* worker:    ``dismon worker`` (decode, join state in the changelog-backed table, rules, alerts),
             timed from its first event to its last through /metrics;
* worker x2: two workers in one group on the same partitions, timed once both are ready (after the
             rebalance that let the second one in);
* + shadow:  one worker that also judges every event under a candidate policy (``--shadow-policy``, here
             the same file: the whole cost of a second judgement);
* + ledger:  one worker that keeps the accounting of disclosures (``--ledger-key``).

and then detection latency at a fixed offered rate (``--latency-rate``, default 2,000 events/s for 20 s;
0 to skip), through bench/latency_bench.py on fresh topics, so that one run prints every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from bench_common import BENCH_ENV, KINDS, ROOT, create_topics, free_port, metric_sums, start_broker

from monitor.live.faust.batching import FETCH_MAX_WAIT_MS

FAUST_NOOP = r"""
import os, sys, time, faust
from faust.transport.drivers import aiokafka as driver
prefix, total, out, fetch_wait_ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# as dismon's consumer (monitor/live/faust/batching.py, FETCH_MAX_WAIT_MS) instead of Faust's fixed 1,500 ms
if fetch_wait_ms:
    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    def short_wait(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = fetch_wait_ms
        return consumer
    driver.AIOKafkaConsumerThread._create_worker_consumer = short_wait
app = faust.App(f"noop-{prefix}-{fetch_wait_ms}", broker="kafka://" + os.environ["BOOT"], store="memory://",
                web_enabled=False, consumer_auto_offset_reset="earliest")
topic = app.topic(*(prefix + "." + k for k in ("requests", "responses", "disposals")), key_serializer="raw",
                  value_serializer="raw")
state = {"n": 0, "first": None}
@app.agent(topic)
async def noop(stream):
    async for _event in stream.events():
        if state["first"] is None:
            state["first"] = time.perf_counter()
        state["n"] += 1
        if state["n"] >= total:
            with open(out, "w") as handle:
                handle.write(str(total / (time.perf_counter() - state["first"])))
            os._exit(0)
class Worker(faust.Worker):  # as dismon's: no spinner, whose handler would set the root logger to DEBUG
    def on_setup_root_logger(self, logger, level):
        self.spinner = None
Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
"""


async def _raw_rate(boot: str, prefix: str, total: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *(f"{prefix}.{k}" for k in KINDS),
        bootstrap_servers=boot,
        auto_offset_reset="earliest",
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    try:
        seen, first = 0, None
        while seen < total:
            batch = await consumer.getmany(timeout_ms=5000, max_records=10_000)
            if first is None and batch:
                first = time.perf_counter()
            seen += sum(len(v) for v in batch.values())
        return total / (time.perf_counter() - (first or time.perf_counter()))
    finally:
        await consumer.stop()


def _metric_events(port: int) -> int:
    return int(metric_sums(port).get("dismon_events_total", 0))


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:  # 503 while recovering, or not up yet
        return False


def _workers_rate(boot: str, prefix: str, policy: str, total: int, count: int, extra: tuple[str, ...] = ()) -> float:
    group = f"bench-{uuid.uuid4().hex[:6]}"
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
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
                group,
                "--metrics-port",
                str(port),
                "--idle-after",
                "off",
                *extra,
            ],
            cwd=ROOT,
            env=BENCH_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        # Timed from the first look at which every worker is ready and events are flowing: for two workers, after
        # the rebalance that let the second one in (the first may have started alone).
        start: tuple[float, int] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(_metric_events(port) for port in ports)
            if start is None and done > 0 and all(_ready(port) for port in ports):
                start = (time.perf_counter(), done)
            if done >= total and start is not None:
                seconds = time.perf_counter() - start[0]
                print(f"  ({count} worker(s): timed over the last {done - start[1]:,} events, {seconds:.1f} s)")
                return (done - start[1]) / seconds
            # Looked at five times a second (each look costs the workers a rendering of their metrics), and a
            # hundred times near the end, so that the end is seen within 10 ms of it.
            time.sleep(0.2 if done < total * 0.9 else 0.01)
        raise SystemExit("the workers did not get through the events within 10 minutes")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-rate", type=int, default=2000, help="events/s offered for the latency run (0: none)")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    boot = start_broker()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
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
                str(args.requests),
                "--fault",
                "all",
                "--fault-rate",
                "0.01",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )

        create_topics(boot, prefix, args.partitions)
        published = subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "replay",
                "--to-kafka",
                "--policy",
                f"{work}/policy.toml",
                "--bootstrap-servers",
                boot,
                "--topic-prefix",
                prefix,
                f"{work}/events.jsonl.gz",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        total = int(published.split("published ")[1].split(" events")[0].replace(",", ""))
        print(f"{total:,} events in {args.partitions} partitions per topic; broker {boot}; {os.cpu_count()} cpus")
        rows = [("aiokafka consumer, no decoding", asyncio.run(_raw_rate(boot, prefix, total)))]
        for name, fetch_wait_ms in (
            ("Faust agent doing nothing", 0),
            (f"  same, fetch wait {FETCH_MAX_WAIT_MS} ms", FETCH_MAX_WAIT_MS),
        ):
            rate_file = os.path.join(work, f"noop-rate-{fetch_wait_ms}")
            subprocess.run(
                [sys.executable, "-c", FAUST_NOOP, prefix, str(total), rate_file, str(fetch_wait_ms)],
                cwd=ROOT,
                capture_output=True,
                env={**os.environ, "BOOT": boot},
                timeout=900,
            )
            with open(rate_file) as handle:
                rows.append((name, float(handle.read())))
        rows.append(("dismon worker", _workers_rate(boot, prefix, f"{work}/policy.toml", total, 1)))
        rows.append(("dismon worker x2 (one group)", _workers_rate(boot, prefix, f"{work}/policy.toml", total, 2)))
        shadow = ("--shadow-policy", f"{work}/policy.toml")  # judged twice: the whole cost of a candidate
        rows.append(
            ("dismon worker + shadow policy", _workers_rate(boot, prefix, f"{work}/policy.toml", total, 1, shadow))
        )
        key = os.path.join(work, "ledger.key")
        subprocess.run([sys.executable, "-m", "monitor.cli", "ledger", "keygen", "--private", key, "--public",
                        os.path.join(work, "ledger.pub")], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        ledger = ("--ledger-key", key)  # the accounting of every disclosure, to <prefix>.ledger
        rows.append(("dismon worker + ledger", _workers_rate(boot, prefix, f"{work}/policy.toml", total, 1, ledger)))
    for name, rate in rows:
        print(f"{name:<32} {rate:>10,.0f} events/s")
    if args.latency_rate:
        latency = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "bench", "latency_bench.py"),
                "--rate",
                str(args.latency_rate),
                "--seconds",
                "20",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        print("latency: " + latency.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
