"""``dismon simulate``: a synthetic scenario with its policy and ground truth."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from monitor.cli import arguments
from monitor.cli.common import EXIT_OK
from monitor.core.timeutil import format_ms, parse_time_ms
from monitor.errors import UsageError
from monitor.simulate import write_scenario
from monitor.simulate.scenario import FAULTS, IRS_ICE_REQUESTS, WINDOWED_FAULTS, plan_default, plan_irs_ice


def add_simulate(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help="write a synthetic scenario (events, policy, ground truth), optionally with injected faults",
        description="Write realistic synthetic request/response traffic, the policy it runs under and the "
        "ground truth of what a correct monitor must find. Reproducible with --seed.",
        epilog="Per-request faults ('all'): " + ", ".join(FAULTS) + ". Windowed faults ('all-windowed'): "
        "volume_spike, ratio_shift, runaway_batch (injected once each, after an 8-day warm-up). The irs-ice-2025 "
        "preset replays the public record: 1.28 "
        "million names sent in June 2025, 47,289 answered with an address on 7 August 2025, about 42,695 of "
        "them for requests without a usable address.",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="directory to write events, policy.toml and truth.json into"
    )
    parser.add_argument("--scenario", choices=["default", "irs-ice-2025"], default="default")
    parser.add_argument(
        "--requests",
        type=arguments.positive_int,
        metavar="N",
        help="number of requests (default: 20,000; irs-ice-2025: 100,000; --full for 1.28 million)",
    )
    parser.add_argument("--full", action="store_true", help="irs-ice-2025 at its real size, 1,280,000 names")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument(
        "--start",
        type=arguments.timestamp,
        default=parse_time_ms("2025-06-02"),
        metavar="TIME",
        help="first day of traffic (default scenario; default 2025-06-02)",
    )
    parser.add_argument(
        "--days", type=arguments.positive_int, default=14, help="days of traffic (default scenario; default 14)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="RULE",
        help="inject this fault (repeatable; 'all' for every per-request fault, 'all-windowed' for the aggregate ones)",
    )
    parser.add_argument(
        "--fault-start",
        type=arguments.timestamp,
        metavar="TIME",
        help="faults only from this time on (default: a quarter into the traffic)",
    )
    parser.add_argument(
        "--fault-rate",
        type=arguments.share,
        default=0.01,
        help="share of requests after --fault-start that carry a fault (default: 0.01)",
    )
    parser.add_argument(
        "--partitions",
        type=arguments.positive_int,
        default=1,
        help="split events over this many files, as a dump of N partitions would (default: 1)",
    )
    parser.add_argument(
        "--disorder",
        type=arguments.duration,
        default=120_000,
        metavar="DUR",
        help="arrival disorder bound, in event time (default: 2m)",
    )
    parser.set_defaults(run=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    known = [*FAULTS, *(f for f in WINDOWED_FAULTS if f != "irs_ice_batch")]
    faults = [f for f in args.fault if f not in ("all", "all-windowed")]
    faults += list(FAULTS) if "all" in args.fault else []
    faults += [f for f in known if f in WINDOWED_FAULTS] if "all-windowed" in args.fault else []
    unknown = [f for f in faults if f not in known]
    if unknown:
        raise UsageError(f"unknown fault(s) {unknown}; known: {', '.join(known)}, all, all-windowed")
    if args.scenario == "irs-ice-2025":
        if faults:
            raise UsageError("the irs-ice-2025 preset has its fault built in; --fault is for the default scenario")
        requests = IRS_ICE_REQUESTS if args.full else (args.requests or 100_000)
        plan = plan_irs_ice(
            args.seed, requests, parse_time_ms("2025-06-16T13:00:00Z"), parse_time_ms("2025-08-07T08:00:00Z")
        )
    else:
        requests = args.requests or 20_000
        end = args.start + args.days * 86_400_000
        fault_start = args.fault_start if args.fault_start is not None else args.start + args.days * 86_400_000 // 4
        if any(fault in FAULTS for fault in faults) and fault_start >= end:  # windowed ones extend the traffic
            raise UsageError(
                f"--fault-start {format_ms(fault_start)} is not before the traffic ends "
                f"({format_ms(end)}): no per-request fault would be injected"
            )
        plan = plan_default(args.seed, requests, args.start, args.days, faults, fault_start, args.fault_rate)
    try:
        output = write_scenario(plan, args.out, args.partitions, args.disorder)
    except OSError as exc:
        raise UsageError(f"cannot write the scenario to {args.out}: {exc.strerror or exc}") from exc
    print(
        f"wrote {output.events:,} events ({len(plan):,} requests, {output.expected:,} expected findings) to "
        f"{', '.join(output.event_files)}; policy {output.policy_file}; ground truth {output.truth_file}",
        file=sys.stderr,
    )
    return EXIT_OK
