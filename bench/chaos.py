"""Chaos harness: live workers under the faults operations teams meet, compared with a replay, run by run.

    .venv/bin/python bench/chaos.py [--runs 10] [--seed 1] [--requests 3000] [--keep DIR]

Each run, on the local broker (deploy/local/kafka.sh, started if needed), with its own topic prefix:

1. simulates a scenario with every rule's faults, the windowed ones included (``dismon simulate --fault all
   --fault all-windowed``);
2. starts a ``dismon worker`` and publishes the scenario in bursts, with aiokafka (murmur2 partitioner) or
   kcat (librdkafka's default partitioner, CRC32), about 2 % of the records sent twice;
3. after each burst but the last, while the workers are still at it, applies a fault drawn from: a SIGKILL
   or a SIGTERM of a worker (and a new one started in its place, on its local join state: ``--state-dir``),
   a second worker joining or leaving (a worker that joins takes a state directory a stopped one left), the
   broker stopped for a few seconds and started again with its data, a SIGHUP (policy reload);
4. closes every input partition with an event at the scenario's end time, waits for the workers, and
   compares the ``(alert_id, status)`` pairs on the alerts topic with those of ``dismon replay`` of exactly
   what was published (duplicates and closing events included), for every rule, and the accounting ledger
   the workers wrote (``--ledger-key``) with the replay's ledger: the same entries, each once, verified.

It prints one line per run (publisher, faults, findings expected, missing, extra, the ledger's entries
missing, extra and repeated, wall time) and a total, and exits 1 if any run missed or invented a finding or
an entry. A run is reproducible from its seed (``--seed S``
makes runs S, S+1, ...), up to the timing of the faults against the workers' progress.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bench_common import BENCH_ENV, KINDS, ROOT, dismon, free_port, http_status, metric_sums, start_broker

from monitor.core.ledger import read_record
from monitor.core.timeutil import format_ms
from monitor.live.kafka import KafkaSettings, read_partitions
from monitor.replay.report import load_truth

PARTITIONS = 4
DUPLICATE_SHARE = 0.02
FAULTS = ("sigkill", "sigterm", "join", "leave", "broker", "sighup")
KAFKA_SH = os.path.join(ROOT, "deploy/local/kafka.sh")
AGREEMENT = "tax-enforcement-2025"  # the simulated scenario's
KIND_OF = {"request": "requests", "response": "responses", "disposal": "disposals"}


@dataclass
class Outcome:
    seed: int
    publisher: str
    records: int
    duplicates: int
    faults: Counter[str] = field(default_factory=Counter)
    expected: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # The accounting ledger: entries a replay's ledger has; of those, not on the topic; on the topic and not in
    # the replay's; appended more than once; and whether `dismon ledger verify --kafka` passed.
    entries: int = 0
    entries_missing: int = 0
    entries_extra: int = 0
    entries_repeated: int = 0
    verified: bool = False

    @property
    def failed(self) -> bool:
        ledger = self.entries_missing or self.entries_extra or self.entries_repeated or not self.verified
        return bool(self.missing or self.extra or ledger)

    def line(self) -> str:
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.faults.items())) or "none"
        return (
            f"seed {self.seed}: {self.publisher}, {self.records:,} records ({self.duplicates} sent twice); "
            f"faults: {faults}; expected {self.expected}, missing {len(self.missing)}, extra {len(self.extra)}; "
            f"ledger {self.entries} entries, missing {self.entries_missing}, extra {self.entries_extra}, repeated "
            f"{self.entries_repeated}, {'verified' if self.verified else 'NOT verified'}; {self.seconds:.0f} s"
        )


class Worker:
    """One ``dismon worker`` process of the run's group."""

    def __init__(self, boot: str, prefix: str, policy: Path, log: Path, state: Path) -> None:
        self.port = free_port()
        self.log = log.open("ab")
        self.state = state
        key = policy.parent / "ledger.key"
        argv = [sys.executable, "-m", "monitor.cli", "worker", "--policy", str(policy), "--bootstrap-servers", boot,
                "--topic-prefix", prefix, "--metrics-port", str(self.port), "--idle-after", "off",
                "--session-timeout", "6s", "--partitions", str(PARTITIONS), "--ledger-key", str(key),
                "--ledger-checkpoint-interval", "1s", "--state-dir", str(state)]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=BENCH_ENV, cwd=ROOT)

    def wait_ready(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log.name}")
            if http_status(f"http://127.0.0.1:{self.port}/readyz") == 200:
                return
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready within {seconds} s; see {self.log.name}")

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.log.close()


class Run:
    """One run: its scenario, publisher, workers and faults."""

    def __init__(self, boot: str, seed: int, requests: int, workdir: Path) -> None:
        self.boot, self.seed, self.rng, self.workdir = boot, seed, random.Random(seed), workdir
        self.prefix = f"chaos-{uuid.uuid4().hex[:8]}"
        self.policy = workdir / "policy.toml"
        self.workers: list[Worker] = []
        self._started = 0
        self._machines: list[Path] = []  # state directories no worker uses: a stopped worker's, for its successor
        dismon("simulate", "--out", str(workdir), "--requests", str(requests), "--fault", "all", "--fault",
                "all-windowed", "--fault-rate", "0.03", "--seed", str(seed))  # fmt: skip
        dismon("ledger", "keygen", "--private", str(workdir / "ledger.key"), "--public", str(workdir / "ledger.pub"))

    def start_worker(self) -> None:
        """A worker on the machine the last stopped one left (its local join state), or on a new one."""
        self._started += 1
        state = self._machines.pop() if self._machines else self.workdir / f"machine-{self._started}"
        worker = Worker(self.boot, self.prefix, self.policy, self.workdir / f"worker-{self._started}.log", state)
        self.workers.append(worker)
        worker.wait_ready()

    def records(self) -> tuple[list[tuple[str, bytes, bytes]], int]:
        """The scenario's events as (topic, key, value), about 2 % of them sent a second time soon after."""
        records, duplicates = [], 0
        for line in gzip.decompress((self.workdir / "events.jsonl.gz").read_bytes()).splitlines():
            event = orjson.loads(line)
            record = (f"{self.prefix}.{KIND_OF[event['type']]}", event["request_id"].encode(), line)
            records.append(record)
            if self.rng.random() < DUPLICATE_SHARE:
                records.insert(len(records) - self.rng.randint(0, min(20, len(records) - 1)), record)
                duplicates += 1
        return records, duplicates

    def closing(self) -> list[tuple[str, int, bytes, bytes]]:
        """An event at the scenario's end on every input partition: every worker's watermark gets there."""
        at = format_ms(load_truth(str(self.workdir / "truth.json")).until_ms)
        ticks = []
        for kind in KINDS:
            for partition in range(PARTITIONS):
                key = f"close-{kind}-{partition}"
                event = {"type": "disposal", "request_id": key, "agreement_id": AGREEMENT, "disposed_at": at}
                ticks.append((f"{self.prefix}.{kind}", partition, key.encode(), orjson.dumps(event)))
        return ticks

    def apply(self, fault: str) -> None:
        rng = self.rng
        if fault in ("sigkill", "sigterm"):
            victim = self.workers.pop(rng.randrange(len(self.workers)))
            victim.stop(signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)
            self._machines.append(victim.state)
            self.start_worker()  # restarted in place
        elif fault == "join":
            self.start_worker()
        elif fault == "leave":
            leaver = self.workers.pop(rng.randrange(len(self.workers)))
            leaver.stop(signal.SIGTERM)
            self._machines.append(leaver.state)
        elif fault == "broker":
            subprocess.run(["bash", KAFKA_SH, "stop"], check=True, capture_output=True)
            time.sleep(rng.uniform(1, 5))
            subprocess.run(["bash", KAFKA_SH, "start", "--keep-data"], check=True, capture_output=True)
        elif fault == "sighup":
            rng.choice(self.workers).process.send_signal(signal.SIGHUP)

    def faults_possible(self) -> list[str]:
        return [
            f
            for f in FAULTS
            if not ((f == "join" and len(self.workers) > 1) or (f == "leave" and len(self.workers) < 2))
        ]

    def wait_caught_up(self, seconds: float = 180) -> None:
        """Until every worker is ready with nothing left to read, twice in a row a few seconds apart."""
        deadline, quiet = time.monotonic() + seconds, 0
        while quiet < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not caught up within {seconds} s; see {self.workdir}")
            done = all(
                http_status(f"http://127.0.0.1:{worker.port}/readyz") == 200
                and metric_sums(worker.port).get("dismon_consumer_lag", 1) == 0
                for worker in self.workers
            )
            quiet = quiet + 1 if done else 0
            time.sleep(3)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.stop(signal.SIGTERM)
        self.workers.clear()


def chaos_run(boot: str, seed: int, requests: int, workdir: Path) -> Outcome:
    started = time.monotonic()
    run = Run(boot, seed, requests, workdir)
    rng = run.rng
    records, duplicates = run.records()
    ticks = run.closing()
    publisher = rng.choice(("aiokafka", "kcat"))
    outcome = Outcome(seed, publisher, len(records), duplicates)
    # What a replay must read: exactly what was published, in that order, closing events included.
    (workdir / "published.jsonl").write_bytes(b"".join(value + b"\n" for *_, value in records + ticks))
    bursts = rng.randint(5, 9)
    cuts = sorted(rng.sample(range(1, len(records)), bursts - 1))
    try:
        run.start_worker()
        for number, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(records)], strict=True)):
            publish(boot, publisher, records[start:end])
            if number < bursts - 1:
                time.sleep(rng.uniform(0, 1.5))  # the workers are somewhere in this burst
                fault = rng.choice(run.faults_possible())
                run.apply(fault)
                outcome.faults[fault] += 1
        asyncio.run(_produce(boot, ticks))
        run.wait_caught_up()
        found = asyncio.run(_alerts(boot, f"{run.prefix}.alerts"))
    finally:
        run.stop()  # SIGTERM: the ledger writer signs its last checkpoint
    expected = replayed(workdir)
    outcome.expected = len(expected)
    outcome.missing, outcome.extra = sorted(expected - found), sorted(found - expected)
    _compare_ledgers(boot, run.prefix, workdir, outcome)
    outcome.seconds = time.monotonic() - started
    return outcome


def _compare_ledgers(boot: str, prefix: str, workdir: Path, outcome: Outcome) -> None:
    """The ledger topic against the ledger of a replay of what was published, and verified."""
    written: list[bytes] = []
    kafka = KafkaSettings(bootstrap_servers=boot, topic_prefix=prefix)
    asyncio.run(read_partitions(kafka, kafka.ledger_topic, [0], lambda _p, _k, value: written.append(value or b"")))
    live = [read_record(value).id for value in written]
    replay = {read_record(line).id for line in (workdir / "ledger" / "entries.jsonl").read_bytes().splitlines()}
    outcome.entries = len(replay)
    outcome.entries_missing, outcome.entries_extra = len(replay - set(live)), len(set(live) - replay)
    outcome.entries_repeated = len(live) - len(set(live))
    try:
        dismon("ledger", "verify", "--kafka", "--bootstrap-servers", boot, "--topic-prefix", prefix,
               "--public-key", str(workdir / "ledger.pub"))  # fmt: skip
        outcome.verified = True
    except RuntimeError:
        outcome.verified = False


def publish(boot: str, publisher: str, records: list[tuple[str, bytes, bytes]]) -> None:
    if publisher == "aiokafka":
        asyncio.run(_produce(boot, [(topic, None, key, value) for topic, key, value in records]))
        return
    kcat = shutil.which("kcat")
    if kcat is None:
        raise RuntimeError("kcat missing: `make setup` installs it (deploy/local/tools.sh)")
    for topic in sorted({topic for topic, _, _ in records}):
        lines = b"".join(key + b"\t" + value + b"\n" for t, key, value in records if t == topic)
        subprocess.run([kcat, "-P", "-b", boot, "-t", topic, "-K", "\t"], input=lines, check=True, capture_output=True,
                       timeout=120)  # fmt: skip


async def _produce(boot: str, records: Sequence[tuple[str, int | None, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key, partition=partition) for topic, partition, key, value in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _alerts(boot: str, topic: str, quiet_ms: int = 3000) -> set[tuple[str, str]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=boot, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        found: set[tuple[str, str]] = set()
        while batch := await consumer.getmany(timeout_ms=quiet_ms):
            for messages in batch.values():
                for message in messages:
                    alert = orjson.loads(message.value or b"{}")
                    found.add((alert["alert_id"], alert["status"]))
        return found
    finally:
        await consumer.stop()


def replayed(workdir: Path) -> set[tuple[str, str]]:
    alerts = workdir / "replay-alerts.jsonl"
    dismon("replay", "--policy", str(workdir / "policy.toml"), "--alerts-out", str(alerts), "--ledger",
           str(workdir / "ledger"), "--ledger-key", str(workdir / "ledger.key"),
           str(workdir / "published.jsonl"))  # fmt: skip
    return {(a["alert_id"], a["status"]) for a in map(orjson.loads, alerts.read_bytes().splitlines())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs, seeds --seed, --seed+1, ... (default: 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run (default: 1)")
    parser.add_argument("--requests", type=int, default=3000, help="requests simulated per run (default: 3,000)")
    parser.add_argument("--keep", type=Path, help="keep each run's files (scenario, logs, alerts) under DIR")
    args = parser.parse_args()
    boot = start_broker()
    root = args.keep or Path(tempfile.mkdtemp(prefix="dismon-chaos-"))
    total, failed, started = Counter[str](), 0, time.monotonic()
    expected = missing = extra = 0
    for seed in range(args.seed, args.seed + args.runs):
        workdir = root / f"seed-{seed}"
        workdir.mkdir(parents=True, exist_ok=True)
        outcome = chaos_run(boot, seed, args.requests, workdir)
        print(outcome.line(), flush=True)
        for label, pairs in (("missing", outcome.missing), ("extra", outcome.extra)):
            for alert_id, status in pairs[:10]:
                print(f"  {label}: {alert_id} {status}", flush=True)
        total.update(outcome.faults)
        expected += outcome.expected
        missing += len(outcome.missing)
        extra += len(outcome.extra)
        failed += outcome.failed
        if args.keep is None and not outcome.failed:
            shutil.rmtree(workdir, ignore_errors=True)
    faults = ", ".join(f"{name} {count}" for name, count in sorted(total.items()))
    print(f"total: {args.runs} runs, {failed} with differences; faults: {faults}; expected {expected}, "
          f"missing {missing}, extra {extra}; {time.monotonic() - started:.0f} s")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
