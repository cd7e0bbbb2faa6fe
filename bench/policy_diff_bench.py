"""What ``dismon policy diff`` costs next to two replays, on the 1.28-million-event log.

    .venv/bin/python bench/policy_diff_bench.py [--events 1280000] [--cache DIR]

Uses (or generates) the irs-ice-2025 log of bench/replay_bench.py; the candidate policy lowers the daily cap
tenfold. Times, each as a fresh process: ``dismon replay`` under each policy (as a user would run them, read
ahead in a second process on two or more CPUs), and ``dismon policy diff`` of the two, which reads and decodes
the log once in one process and judges every event under both.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from bench_common import add_log_options, dismon, irs_ice_log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_options(parser)
    args = parser.parse_args()
    directory = irs_ice_log(args.cache, args.events)
    old = os.path.join(directory, "policy.toml")
    with open(old) as handle:
        text = handle.read()
    cap = int(re.search(r"max_disclosures_per_day = (\d+)", text).group(1))  # type: ignore[union-attr]
    new = os.path.join(directory, "candidate.toml")
    with open(new, "w") as handle:
        handle.write(text.replace(f"max_disclosures_per_day = {cap}", f"max_disclosures_per_day = {cap // 10}"))
    log = os.path.join(directory, "events.jsonl.gz")
    replays = [dismon("replay", "--policy", policy, "--alerts-out", os.devnull, log)[0] for policy in (old, new)]
    seconds, out = dismon("policy", "diff", old, new, log)
    print(f"log: {args.events:,} events; {out.splitlines()[0]}")
    print(f"two replays:  {replays[0]:.1f} s + {replays[1]:.1f} s = {sum(replays):.1f} s")
    print(f"policy diff:  {seconds:.1f} s ({seconds / sum(replays):.0%} of the two replays)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
