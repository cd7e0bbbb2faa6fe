"""Detection quality of the windowed rules at their default thresholds.

    .venv/bin/python bench/detection_quality.py [--months 6] [--per-day 1500] [--seeds 1]

1. False alarms: six simulated months of clean traffic (office-hours and weekday seasonality, busy and
   quiet days, units of different sizes; no faults) replayed through the detector; every alert is a
   false alarm. Reported per simulated month.
2. Detection delay: a scenario with every windowed fault (a 10x volume spike of one unit, a runaway
   batch over the caps, the disclosure ratio doubling), each injected once after the warm-up; for
   each expected finding, the delay from the fault's start to the alert, in event time, in events and
   in responses.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from monitor.config import load_policy  # noqa: E402
from monitor.core.detector import Detector  # noqa: E402
from monitor.core.events import Response  # noqa: E402
from monitor.core.findings import SubjectHasher  # noqa: E402
from monitor.core.timeutil import MS_PER_DAY, parse_time_ms  # noqa: E402
from monitor.replay.report import finding_key, load_truth  # noqa: E402
from monitor.replay.sources import ReadOptions, merged_events  # noqa: E402
from monitor.simulate import write_scenario  # noqa: E402
from monitor.simulate.scenario import plan_default  # noqa: E402

START = parse_time_ms("2025-01-06")  # a Monday
KEY = b"bench-key-0123456789abcdef"


def _replay(directory: str, until_ms: int) -> tuple[list[tuple[int, int, int, object]], list[int], list[int]]:
    """Findings as (events so far, responses so far, stream time, finding); event times and response counts."""
    detector = Detector(load_policy(os.path.join(directory, "policy.toml")), SubjectHasher(KEY))
    paths = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("events"))
    found: list[tuple[int, int, int, object]] = []
    times: list[int] = []
    responses_seen: list[int] = []
    responses = 0
    for event_ms, _seq, event in merged_events(paths, lambda d: None, ReadOptions(detector.allowed_lateness_ms)):
        responses += isinstance(event, Response)
        times.append(event_ms)
        responses_seen.append(responses)
        for finding in detector.process(event, event_ms):
            if finding.status == "firing":
                found.append((len(times), responses, finding.detected_stream_ms, finding))
    for finding in detector.advance_to(until_ms):
        if finding.status == "firing":
            found.append((len(times), responses, finding.detected_stream_ms, finding))
    return found, times, responses_seen


def false_alarms(months: int, per_day: int, seed: int, workdir: str) -> tuple[int, Counter[str], int]:
    days = months * 30
    plan = plan_default(seed, per_day * days, START, days, [], START + days * MS_PER_DAY, 0.0)
    directory = os.path.join(workdir, f"clean-{seed}")
    output = write_scenario(plan, directory)
    found, _times, _responses = _replay(directory, load_truth(output.truth_file).until_ms)
    return output.events, Counter(f.rule for *_rest, f in found), days  # type: ignore[attr-defined]


def delays(per_day: int, seed: int, workdir: str) -> list[tuple[str, str, float, int, int]]:
    days = 30
    plan = plan_default(seed, per_day * days, START, days, ["volume_spike", "runaway_batch", "ratio_shift"], START, 0.0)
    directory = os.path.join(workdir, f"faults-{seed}")
    output = write_scenario(plan, directory)
    truth = load_truth(output.truth_file)
    found, times, responses_seen = _replay(directory, truth.until_ms)
    rows = []
    for (rule, key), fault_ms in sorted(truth.expected.items(), key=lambda item: item[1]):
        hits = [(n, r, at) for n, r, at, f in found if finding_key(f) == (rule, key)]  # type: ignore[arg-type]
        if not hits:
            rows.append((rule, key, float("nan"), -1, -1))
            continue
        events_at, responses_at, detected_ms = hits[0]
        start_index = next((i for i, t in enumerate(times) if t >= fault_ms), len(times))
        responses_before = responses_seen[start_index - 1] if start_index else 0
        rows.append(
            (rule, key, (detected_ms - fault_ms) / 3_600_000, events_at - start_index, responses_at - responses_before)
        )
    unexpected = {finding_key(f) for *_r, f in found} - set(truth.expected)  # type: ignore[arg-type]
    if unexpected:
        print(f"  unexpected findings in the fault scenario: {sorted(unexpected)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--per-day", type=int, default=1500, help="requests per day (default 1,500)")
    parser.add_argument("--seeds", type=int, default=1, help="independent runs of each part (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        print(f"false alarms at default thresholds, clean traffic, {args.per_day:,} requests/day:")
        print(f"{'seed':>4} {'months':>6} {'events':>10} {'alerts':>6} {'per month':>9}  by rule")
        for seed in range(1, args.seeds + 1):
            started = time.perf_counter()
            events, by_rule, days = false_alarms(args.months, args.per_day, seed, workdir)
            total = sum(by_rule.values())
            print(
                f"{seed:>4} {days / 30:>6.0f} {events:>10,} {total:>6} {total / (days / 30):>9.2f}  "
                f"{dict(by_rule) or '-'}   ({time.perf_counter() - started:.0f} s)"
            )
        print("\ndetection delay after each injected fault (30 days of traffic, faults after an 8-day warm-up):")
        print(f"{'seed':>4} {'rule':<24} {'about':<36} {'hours':>6} {'events':>8} {'responses':>9}")
        for seed in range(1, args.seeds + 1):
            for rule, key, hours, events, responses in delays(args.per_day, seed, workdir):
                print(f"{seed:>4} {rule:<24} {key:<36} {hours:>6.2f} {events:>8,} {responses:>9,}")


if __name__ == "__main__":
    main()
