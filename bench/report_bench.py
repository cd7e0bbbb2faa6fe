"""How long the audit report and an incident report take for the 1.28-million-event log.

    .venv/bin/python bench/report_bench.py [--events 1280000] [--cache DIR]

Uses (or generates) the same irs-ice-2025 log as bench/replay_bench.py, replays it once with ``--alerts-out``
and ``--summary-out``, then times, each as the command a user runs (a fresh process: start-up and the
plotting library's import included), ``dismon report`` with the summary and the ground truth, and
``dismon incident`` for the leak's agreement and day.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench_common import add_log_options, dismon, irs_ice_log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_options(parser)
    args = parser.parse_args()
    directory = irs_ice_log(args.cache, args.events)
    files = {name: os.path.join(directory, name) for name in ("alerts.jsonl", "summary.json", "truth.json")}
    replay, _ = dismon("replay", "--policy", os.path.join(directory, "policy.toml"), "--alerts-out",
                    files["alerts.jsonl"], "--summary-out", files["summary.json"], "--ground-truth",
                    files["truth.json"], os.path.join(directory, "events.jsonl.gz"))  # fmt: skip
    with open(files["alerts.jsonl"], "rb") as handle:
        alerts = sum(1 for _ in handle)
    report, _ = dismon("report", "--alerts", files["alerts.jsonl"], "--summary", files["summary.json"], "--truth",
                    files["truth.json"], "--out", os.path.join(directory, "report.html"))  # fmt: skip
    incident, _ = dismon("incident", "--alerts", files["alerts.jsonl"], "--agreement", "irs-ice-2025", "--since",
                      "2025-08-07", "--until", "2025-08-08", "--out", os.path.join(directory, "incident"))  # fmt: skip
    size_kb = os.path.getsize(os.path.join(directory, "report.html")) / 1024
    print(f"log: {args.events:,} events; replay with --summary-out {replay:.1f} s, {alerts:,} alerts")
    print(f"dismon report:   {report:.2f} s ({size_kb:.0f} KiB of HTML)")
    print(f"dismon incident: {incident:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
