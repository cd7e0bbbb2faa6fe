"""Replay throughput and peak memory on a 1.28-million-event log, next to the parse-only floor.

    .venv/bin/python bench/replay_bench.py [--events 1280000] [--cache DIR] [--splits] [--partitions N]

Generates the log once (the irs-ice-2025 preset: half requests, half responses) and measures, each
in a fresh process so peak RSS is its own:

* floor (gzip module): ``gzip.open`` line iteration + ``orjson.loads`` per line;
* floor (chunked):     the replay's own reader (gzip inflated on a thread) + ``orjson.loads`` per line;
* msgspec decode:      the same reader + the typed decoder with the event-time conversion, as the replay uses;
* replay-inline:       the whole ``dismon replay`` path in one process (reorder, detector, rules; alerts dropped);
* replay:              the same with ``--read-ahead`` (the default on two or more CPUs): a second process
                       reads, validates and orders the input and takes a share of the checks. Its peak RSS
                       and CPU time are the "reader" columns; CPU time includes the threads that inflate gzip;
* with --splits, the same with the checks forced into one process or the other.

With ``--partitions N`` the log is written as N files, as a dump of N partitions would be (all open at once
during the replay, each with its own read-ahead and reorder buffer); the floors then read the files one
after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench_common import add_log_options  # noqa: E402

MEASURE = r"""
import gc, json, os, resource, sys, time
mode, paths, policy = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
import orjson
from monitor.replay.sources import open_lines
count = 0
started = time.perf_counter()
if mode == "floor-gzip":
    import gzip
    for path in paths:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                orjson.loads(line); count += 1
elif mode == "floor-chunked":
    for path in paths:
        for line in open_lines(path):
            orjson.loads(line); count += 1
elif mode == "msgspec":
    from monitor.core.events import decode_timed
    for path in paths:
        for line in open_lines(path):
            decode_timed(line); count += 1
else:
    from monitor.core.detector import Detector
    from monitor.core.findings import SubjectHasher
    from monitor.config import load_policy
    from monitor.replay.run import ReplayOptions, run_replay
    detector = Detector(load_policy(policy), SubjectHasher(b"bench-key-0123456789abcdef"))
    split = {"replay": "balanced", "replay-inline": None}.get(mode, mode.removeprefix("replay-reduce-in-"))
    summary = run_replay(paths, detector, lambda f: None, lambda d: None, ReplayOptions(read_ahead=split))
    count = summary.total_events
seconds = time.perf_counter() - started
own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"events": count, "seconds": seconds, "cpu_seconds": own.ru_utime + own.ru_stime,
                  "reader_cpu_seconds": children.ru_utime + children.ru_stime,
                  "peak_rss_mb": own.ru_maxrss / 1024, "reader_rss_mb": children.ru_maxrss / 1024}))
"""


def measure(mode: str, paths: list[str], policy: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, ",".join(paths), policy],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(HERE),
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_options(parser)
    parser.add_argument(
        "--splits",
        action="store_true",
        help="also run the replay with the reducing forced into the reading process (reader) or "
        "into the replay's own process (replay), instead of shared by load",
    )
    parser.add_argument("--partitions", type=int, default=1, help="write the log as this many files (default 1)")
    args = parser.parse_args()
    suffix = "" if args.partitions == 1 else f"-p{args.partitions}"
    directory = os.path.join(args.cache, f"irs-ice-{args.events}{suffix}")
    policy = os.path.join(directory, "policy.toml")
    if not os.path.exists(policy):
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "simulate",
                "--scenario",
                "irs-ice-2025",
                "--requests",
                str(args.events // 2),
                "--partitions",
                str(args.partitions),
                "--out",
                directory,
            ],
            check=True,
            cwd=os.path.dirname(HERE),
        )
        print(f"generated {directory} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    log = sorted(os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".jsonl.gz"))
    size_mb = sum(os.path.getsize(path) for path in log) / 2**20
    print(
        f"log: {args.events:,} events in {len(log)} file(s), {size_mb:.0f} MiB gzip; python {sys.version.split()[0]},"
        f" {os.cpu_count()} cpus"
    )
    modes = ["floor-gzip", "floor-chunked", "msgspec", "replay-inline", "replay"]
    if args.splits:
        modes += ["replay-reduce-in-reader", "replay-reduce-in-replay"]
    rows = [(mode, measure(mode, log, policy)) for mode in modes]
    floor = min(r["seconds"] for m, r in rows if m.startswith("floor"))
    print(
        f"{'measurement':<23} {'events/s':>10} {'seconds':>8} {'x floor':>8} {'peak RSS MiB':>13} {'reader MiB':>11}"
        f" {'CPU s':>6} {'reader CPU s':>13}"
    )
    for mode, r in rows:
        reader = f"{r['reader_rss_mb']:.0f}" if r["reader_rss_mb"] else "-"
        reader_cpu = f"{r['reader_cpu_seconds']:.1f}" if r["reader_rss_mb"] else "-"
        print(
            f"{mode:<23} {r['events'] / r['seconds']:>10,.0f} {r['seconds']:>8.2f} {r['seconds'] / floor:>8.2f}"
            f" {r['peak_rss_mb']:>13.0f} {reader:>11} {r['cpu_seconds']:>6.1f} {reader_cpu:>13}"
        )


if __name__ == "__main__":
    main()
