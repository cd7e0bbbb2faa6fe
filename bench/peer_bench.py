"""Live throughput against the strongest Python peer: the worker next to Quix Streams, aiokafka and Faust.

    make peer-bench         (installs the lock's `peer` group, then runs this)
    .venv/bin/python bench/peer_bench.py [--requests 100000] [--partitions 4]

On the local broker (deploy/local/kafka.sh), publishes the irs-ice-2025 preset once into fresh topics, then
measures in turn, each consumer reading every input topic from the beginning in a fresh group, each in its
own process, events/s from its first event to its last:

* aiokafka:    a raw AIOKafkaConsumer, no decoding (the client's ceiling);
* faust:       a Faust agent that does nothing (Faust's per-event ceiling);
* quix:        a Quix Streams application joining each response to its request in Quix's state (RocksDB,
               changelog topics, at least once), judging one rule: an address disclosed for a request whose
               address was none (a street line without a house number, or no five-digit zip); tuned for
               throughput (``consumer_poll_timeout=0.05``), and once on its defaults;
* worker:      ``dismon worker`` with every rule of the preset, its local state and standby on (defaults).

It prints events/s for each, the improper disclosures the Quix join found next to those ``dismon replay``
finds in the same log (a check that the peer did the work), and the ratio of the worker to the tuned Quix join.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid

from bench_common import BENCH_ENV, ROOT, create_topics, start_broker
from worker_bench import FAUST_NOOP, _raw_rate, _workers_rate

QUIX_JOIN = r"""
import json, os, sys, time
from quixstreams import Application
prefix, total, out, poll_timeout, state_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
options = {} if poll_timeout == "default" else {"consumer_poll_timeout": float(poll_timeout)}
app = Application(broker_address=os.environ["BOOT"], consumer_group=f"quix-{prefix}-{poll_timeout}",
                  auto_offset_reset="earliest", state_dir=state_dir, loglevel="WARNING", **options)
topics = [app.topic(f"{prefix}.{kind}", key_deserializer="str", value_deserializer="json")
          for kind in ("requests", "responses", "disposals")]
sdf = app.dataframe(topics[0]).concat(app.dataframe(topics[1])).concat(app.dataframe(topics[2]))
seen = {"n": 0, "first": None, "improper": 0}

def join(event, state):
    if seen["first"] is None:
        seen["first"] = time.perf_counter()
    kind = event.get("type")
    if kind == "request":
        address = (event.get("subject") or {}).get("address") or {}
        street, zip_code = str(address.get("street") or ""), str(address.get("zip") or "")
        # no address: a street line without a house number (or none), or no five-digit zip
        state.set("request", not any(c.isdigit() for c in street) or not (len(zip_code) == 5 and zip_code.isdigit()))
    elif kind == "response" and "address" in (event.get("disclosed") or {}):
        if state.get("request") is True:
            seen["improper"] += 1
    seen["n"] += 1
    if seen["n"] >= total:
        with open(out, "w") as handle:
            json.dump({"rate": total / (time.perf_counter() - seen["first"]), "improper": seen["improper"]}, handle)
        app.stop()

sdf = sdf.update(join, stateful=True)
app.run()
"""


def _quix(boot: str, prefix: str, total: int, work: str, poll_timeout: str) -> tuple[float, int]:
    out, state = os.path.join(work, f"quix-{poll_timeout}.json"), os.path.join(work, f"quix-state-{poll_timeout}")
    result = subprocess.run(
        [sys.executable, "-c", QUIX_JOIN, prefix, str(total), out, poll_timeout, state],
        cwd=ROOT, env={**os.environ, "BOOT": boot}, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if not os.path.exists(out):
        raise SystemExit(f"the Quix join did not finish:\n{result.stderr[-3000:]}")
    with open(out) as handle:
        figures = json.load(handle)
    return float(figures["rate"]), int(figures["improper"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="requests of the preset (default 100,000)")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    if importlib.util.find_spec("quixstreams") is None:
        raise SystemExit("Quix Streams is not installed: `make peer-bench` installs the lock's peer group")
    boot = start_broker()
    prefix = f"peer{uuid.uuid4().hex[:6]}"
    dismon = [sys.executable, "-m", "monitor.cli"]
    with tempfile.TemporaryDirectory() as work:
        simulate = ["simulate", "--scenario", "irs-ice-2025", "--requests", str(args.requests), "--out", work]
        subprocess.run([*dismon, *simulate], cwd=ROOT, check=True, capture_output=True)
        create_topics(boot, prefix, args.partitions)
        published = subprocess.run(
            [*dismon, "replay", "--to-kafka", "--policy", f"{work}/policy.toml", "--bootstrap-servers", boot,
             "--topic-prefix", prefix, f"{work}/events.jsonl.gz"],
            cwd=ROOT, check=True, capture_output=True, text=True, env=BENCH_ENV,
        ).stderr  # fmt: skip
        total = int(published.split("published ")[1].split(" events")[0].replace(",", ""))
        summary = os.path.join(work, "summary.json")
        replay = ["replay", "--policy", f"{work}/policy.toml", "--summary-out", summary, f"{work}/events.jsonl.gz"]
        subprocess.run([*dismon, *replay], cwd=ROOT, check=True, capture_output=True, env=BENCH_ENV)
        with open(summary) as handle:
            replayed = sum(improper for _day, _all, improper in json.load(handle)["disclosures_by_day"])
        print(f"{total:,} events of irs-ice-2025 in {args.partitions} partitions per topic; broker {boot}; "
              f"{os.cpu_count()} cpus", flush=True)  # fmt: skip
        rows = [("aiokafka consumer, no decoding", asyncio.run(_raw_rate(boot, prefix, total)))]
        rate_file = os.path.join(work, "noop-rate")
        subprocess.run([sys.executable, "-c", FAUST_NOOP, prefix, str(total), rate_file, "0"], cwd=ROOT,
                       capture_output=True, env={**os.environ, "BOOT": boot}, timeout=900)  # fmt: skip
        with open(rate_file) as handle:
            rows.append(("Faust agent doing nothing", float(handle.read())))
        quix, improper = _quix(boot, prefix, total, work, "0.05")
        rows.append(("Quix join, consumer_poll_timeout 0.05", quix))
        rows.append(("Quix join, defaults", _quix(boot, prefix, total, work, "default")[0]))
        worker = _workers_rate(boot, prefix, f"{work}/policy.toml", total, 1)
        rows.append(("dismon worker, every rule", worker))
    for name, rate in rows:
        print(f"{name:<40} {rate:>10,.0f} events/s")
    print(f"improper disclosures: the Quix join found {improper:,}, dismon replay {replayed:,}")
    print(f"worker / tuned Quix join: {worker / quix:.2f}x")


if __name__ == "__main__":
    main()
