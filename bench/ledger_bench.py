"""What the accounting of disclosures costs a replay, on the 1.28-million-event log.

    .venv/bin/python bench/ledger_bench.py [--events 1280000] [--cache DIR] [--runs 3]

Uses (or generates) the irs-ice-2025 log of bench/replay_bench.py. Times ``dismon replay`` without and with
``--ledger`` (a fresh ledger each run, a checkpoint every 100,000 entries and at the end), each as a fresh
process, alternating, and ``dismon ledger verify`` of the ledger written. Prints the best of ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from bench_common import add_log_options, dismon, irs_ice_log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_options(parser)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    directory = irs_ice_log(args.cache, args.events)
    log = os.path.join(directory, "events.jsonl.gz")
    replay = ("replay", "--policy", os.path.join(directory, "policy.toml"), "--alerts-out", os.devnull)
    with tempfile.TemporaryDirectory() as work:
        key, public, ledger = (os.path.join(work, name) for name in ("key", "pub", "ledger"))
        dismon("ledger", "keygen", "--private", key, "--public", public)
        off, on, verify = [], [], []
        for _run in range(args.runs):
            off.append(dismon(*replay, log)[0])
            shutil.rmtree(ledger, ignore_errors=True)
            on.append(dismon(*replay, "--ledger", ledger, "--ledger-key", key, log)[0])
            seconds, out = dismon("ledger", "verify", ledger, "--public-key", public)
            verify.append(seconds)
        print(f"log: {args.events:,} events; {out.strip()}")
    print(f"replay:               {min(off):.2f} s")
    print(f"replay with --ledger: {min(on):.2f} s ({min(on) / min(off) - 1:+.0%})")
    print(f"ledger verify:        {min(verify):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
