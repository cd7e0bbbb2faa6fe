"""Blind time: how long a worker detects nothing after a restart or a failover, by the size of its join state.

    .venv/bin/python bench/recovery.py [--ids 100000,1280000] [--histories 1,4] [--session-timeout 10s]

For each number of held request ids and each history length, on fresh topics of the local broker: the
irs-ice-2025 preset's requests (``dismon simulate``), published ``history`` times over (the same live state
under that many times as many changelog writes), go to one worker with a stable identity
(``--instance-id``) until it holds them all. Then, in turn:

* SIGTERM restart: the worker stopped and started again under its identity;
* SIGKILL restart in place: killed, started again under its identity;
* failover: a second worker joins (its own identity), both ready, then the first is killed for good.

Each column gives seconds from the stop (or kill) to ``/readyz`` = 200 on the worker that carries on, and
until findings come again from every partition: twelve responses disclosing a field the agreement does not
permit, for held requests spread over the partitions, published at the moment of the stop, until all their
alerts are on the alerts topic.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from bench_common import BENCH_ENV, ROOT, create_topics, dismon, free_port, http_status, metric_sums, start_broker

PARTITIONS = 4
_PROBES = 12  # violating responses per measurement: with 4 partitions, every one gets some (p > 0.96)


class Worker:
    def __init__(self, boot: str, prefix: str, policy: str, identity: str, session: str, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("ab")
        state = log.parent / f"{prefix}-{identity}.state"  # each identity's own, kept across its restarts
        argv = [sys.executable, "-m", "monitor.cli", "worker", "--policy", policy, "--bootstrap-servers", boot,
                "--topic-prefix", prefix, "--metrics-port", str(self.port), "--idle-after", "off",
                "--instance-id", identity, "--session-timeout", session, "--max-join-entries", "20000000",
                "--state-dir", str(state)]  # fmt: skip
        env = {**BENCH_ENV, "DISMON_LOG_LEVEL": "INFO"}  # the recovery's log line says what it read
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log.name}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def wait(self, condition: object, seconds: float = 1800) -> float:
        """Seconds until ``condition()``."""
        started = time.monotonic()
        while not condition():  # type: ignore[operator]
            if time.monotonic() - started > seconds:
                raise RuntimeError(f"not within {seconds} s; see {self.log.name}")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self, sig: int) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=120)
        self.log.close()


async def _publish(boot: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _alerts_for(boot: str, topic: str, request_ids: set[str], after: dict[int, int], seconds: float) -> None:
    """Until the alerts topic, after ``after``, has an alert for each of ``request_ids``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=boot, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in after]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, after[tp.partition])
        deadline = time.monotonic() + seconds
        waiting = set(request_ids)
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                waiting -= {orjson.loads(r.value or b"{}").get("request_id") for r in records}
            if not waiting:
                return
        raise RuntimeError(f"no alert for {sorted(waiting)} within {seconds} s")
    finally:
        await consumer.stop()


async def _ends(boot: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=boot, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


class Case:
    """One row: the topics, the requests, the probes."""

    def __init__(self, boot: str, work: Path, ids: int, history: int, session: str) -> None:
        self.boot, self.work, self.session = boot, work, session
        self.prefix = f"recovery-{uuid.uuid4().hex[:8]}"
        scenario = work / f"irs-{ids}"
        if not (scenario / "events.jsonl.gz").exists():
            dismon("simulate", "--scenario", "irs-ice-2025", "--requests", str(ids), "--out", str(scenario))
        self.policy = str(scenario / "policy.toml")
        self.requests: list[tuple[str, bytes, bytes]] = []
        self.responses: list[bytes] = []
        with gzip.open(scenario / "events.jsonl.gz") as log:
            for line in log:
                event = orjson.loads(line)
                if event["type"] == "request":
                    self.requests.append((f"{self.prefix}.requests", event["request_id"].encode(), line.rstrip()))
                elif len(self.responses) < 3 * _PROBES:
                    # Disclosing a field the agreement does not permit: an unpermitted_field finding.
                    event["disclosed"] = {**(event.get("disclosed") or {}), "employer": "Acme Corp"}
                    self.responses.append(orjson.dumps(event))
        self.total = len(self.requests) * history
        create_topics(boot, self.prefix, PARTITIONS)
        for _ in range(history):
            asyncio.run(_publish(boot, self.requests))
        self.workers = 0

    def worker(self, identity: str) -> Worker:
        self.workers += 1
        return Worker(
            self.boot, self.prefix, self.policy, identity, self.session, self.work / f"{self.prefix}-{self.workers}.log"
        )

    def probe(self) -> tuple[set[str], dict[int, int]]:
        """Violating responses for held requests (one in every partition, as likely as not), published now;
        their request ids and where the alerts topic ended."""
        responses, self.responses = self.responses[:_PROBES], self.responses[_PROBES:]
        request_ids = [orjson.loads(response)["request_id"] for response in responses]
        ends = asyncio.run(_ends(self.boot, f"{self.prefix}.alerts"))
        records = [(f"{self.prefix}.responses", r.encode(), v) for r, v in zip(request_ids, responses, strict=True)]
        asyncio.run(_publish(self.boot, records))
        return set(request_ids), ends

    def found(self, request_ids: set[str], ends: dict[int, int], started: float) -> float:
        asyncio.run(_alerts_for(self.boot, f"{self.prefix}.alerts", request_ids, ends, 1800))
        return time.monotonic() - started


def measure(case: Case) -> list[tuple[float, float]]:
    """(seconds to ready, seconds to new findings from every partition) for a SIGTERM restart, a SIGKILL
    restart and a failover."""
    first = case.worker("a")
    first.wait(lambda: first.ready() and metric_sums(first.port).get("dismon_events_total", 0) >= case.total)
    columns = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        started = time.monotonic()
        first.stop(sig)
        request_id, ends = case.probe()
        first = case.worker("a")
        first.wait(first.ready)
        columns.append((time.monotonic() - started, case.found(request_id, ends, started)))
    second = case.worker("b")
    second.wait(lambda: second.ready() and first.ready())
    time.sleep(2)  # the rebalance that let the second one in has settled
    watch = _Readiness(second)
    started = time.monotonic()
    first.stop(signal.SIGKILL)
    request_id, ends = case.probe()
    found = case.found(request_id, ends, started)
    second.wait(second.ready)
    columns.append((watch.back(started), found))
    second.stop(signal.SIGTERM)
    return columns


class _Readiness(threading.Thread):
    """Polls a worker's /readyz: when it was last 200 again after a 503 (it recovers the partitions it takes
    over), or, if it never went 503, from the start."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True)
        self.worker, self.went_down, self.came_back = worker, False, 0.0
        self.start()

    def run(self) -> None:
        while self.worker.process.poll() is None:
            ok = http_status(f"http://127.0.0.1:{self.worker.port}/readyz") == 200
            if not ok:
                self.went_down = True
            elif self.went_down and not self.came_back:
                self.came_back = time.monotonic()
            time.sleep(0.05)

    def back(self, started: float) -> float:
        return self.came_back - started if self.came_back else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", default="100000,1280000", help="held request ids per row (default 100000,1280000)")
    parser.add_argument("--histories", default="1,4", help="changelog writes per live entry (default 1,4)")
    parser.add_argument("--session-timeout", default="10s", help="the workers' session timeout (default 10s)")
    args = parser.parse_args()
    boot = start_broker()
    print(f"broker {boot}; {os.cpu_count()} cpus; session timeout {args.session_timeout}; seconds to /readyz = 200 "
          "/ to new findings from every partition")  # fmt: skip
    print(f"{'held ids':>10} {'history':>7} {'SIGTERM restart':>18} {'SIGKILL restart':>18} {'failover':>18}")
    with tempfile.TemporaryDirectory() as work:
        for ids in (int(n) for n in args.ids.split(",")):
            for history in (int(h) for h in args.histories.split(",")):
                case = Case(boot, Path(work), ids, history, args.session_timeout)
                cells = " ".join(f"{ready:>8.1f} / {found:>6.1f}" for ready, found in measure(case))
                print(f"{ids:>10,} {history:>6}x {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
