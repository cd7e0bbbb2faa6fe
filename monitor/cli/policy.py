"""``dismon policy check`` (validate a policy file, or show how it judges an address) and ``dismon policy diff``
(what a policy change would do to the findings on real history)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from monitor.cli import arguments
from monitor.cli.common import EXIT_ALERTS, EXIT_OK, now_ms, write_file
from monitor.config import load_policy, subject_hasher
from monitor.core import explain
from monitor.core.detector import DEFAULT_ALLOWED_LATENESS_MS
from monitor.core.findings import SEVERITY_RANK
from monitor.core.policy import Policy
from monitor.core.timeutil import format_ms
from monitor.errors import UsageError


def add_policy(commands: Any) -> None:
    parser = commands.add_parser("policy", help="policy file tools", description="Policy file tools.")
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="validate a policy file and print what it defines",
        description=(
            "Validate a policy file; print its agreements, or the file, line/key and reason of the first error (exit "
            "2)."
        ),
    )
    check.add_argument("path", metavar="P")
    check.add_argument(
        "--explain-address",
        metavar="ADDRESS",
        help=(
            'show how each agreement judges this address ("street, city, ST 12345"): which check each field '
            "passes or fails, and the street line's form; - reads addresses from stdin, one per line, which keeps "
            "them out of shell history. The address itself is never printed."
        ),
    )
    check.add_argument("--agreement", metavar="ID", help="with --explain-address: only this agreement")
    check.set_defaults(run=_policy_check)

    diff = sub.add_parser(
        "diff",
        help="what changing OLD to NEW would do to the findings on real history",
        description="Replay the logs once and judge every event under both policies. Prints the findings the new "
        "policy adds and those it loses, by rule, severity and agreement, with counts, first and last event time "
        "and example alert ids (the same finding has the same alert id under both policies). Exit 0; with "
        "--fail-on-lost SEVERITY, 1 when the new policy loses findings of that severity or worse: a gate for "
        "policy changes in CI.",
    )
    diff.add_argument("old", metavar="OLD", help="the policy in force")
    diff.add_argument("new", metavar="NEW", help="the candidate")
    diff.add_argument("files", nargs="+", metavar="LOG", help="JSONL or JSONL.gz logs")
    diff.add_argument("--until", type=arguments.timestamp, metavar="TIME",
                      help="advance the clock to TIME after the last event, as replay --until")  # fmt: skip
    diff.add_argument("--allowed-lateness", type=arguments.duration, default=DEFAULT_ALLOWED_LATENESS_MS,
                      metavar="DUR", help="as replay (default 10m)")  # fmt: skip
    diff.add_argument("--out", metavar="F", help="every differing finding as a JSON line with 'change': added|removed")
    diff.add_argument("--fail-on-lost", choices=sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__),
                      metavar="SEVERITY",
                      help="exit 1 if the new policy loses a finding of SEVERITY or worse")  # fmt: skip
    diff.set_defaults(run=_policy_diff)

    test = sub.add_parser(
        "test",
        help="run policy test files: event sequences with the findings expected and those expected absent",
        description="Run test files written next to a policy (TOML: the policy, then [[case]]s, each with events "
        "as JSON lines, an optional 'until' to advance the clock, 'expect' and 'absent' lists of "
        "{rule, request_id, agreement_id, severity, status}). Prints each case and a total; exit 0 when every "
        "case passes, 1 when one fails, 2 for a file that is not a valid test file. See policies/*.test.toml.",
    )
    test.add_argument("files", nargs="+", metavar="FILE", help="test files (*.test.toml)")
    test.add_argument("--junit-xml", metavar="F", help="also write the results as JUnit XML, for CI")
    test.set_defaults(run=_policy_test)


def _policy_diff(args: argparse.Namespace) -> int:
    import time

    import orjson

    from monitor.core.detector import Detector
    from monitor.core.events import FUTURE_TOLERANCE_MS
    from monitor.outputs.alerts import FindingSender
    from monitor.replay.diff import run_diff
    from monitor.replay.sources import DeadLetter, ReadOptions

    old, new = load_policy(args.old), load_policy(args.new)
    for path in args.files:
        if path != "-" and not os.path.isfile(path):
            raise UsageError(f"no such file: {path}")
    hasher = subject_hasher()
    invalid = 0

    def dead_letter(_letter: DeadLetter) -> None:
        nonlocal invalid
        invalid += 1

    started = time.perf_counter()
    read = ReadOptions(args.allowed_lateness, not_after_ms=now_ms() + FUTURE_TOLERANCE_MS)
    result = run_diff(
        args.files,
        Detector(old, hasher, args.allowed_lateness),
        Detector(new, hasher, args.allowed_lateness),
        dead_letter,
        read,
        args.until,
        read_ahead=(os.cpu_count() or 1) >= 2 and "-" not in args.files,
    )
    seconds = time.perf_counter() - started
    print(
        f"{result.events:,} events ({invalid:,} invalid) in {seconds:.1f} s: {result.old:,} findings under "
        f"{args.old}, {result.new:,} under {args.new}; {len(result.added):,} added, {len(result.removed):,} lost"
    )
    for label, findings in (("added", result.added), ("lost", result.removed)):
        for (rule, severity, agreement), change in result.by_rule(findings).items():
            span = f"{format_ms(change.first_ms or 0)} .. {format_ms(change.last_ms or 0)}"
            print(
                f"  {label:5} {change.count:>8,}  {rule} ({severity}) on {agreement}, {span}, "
                f"e.g. {', '.join(change.examples)}"
            )
    if args.out:
        encode = FindingSender(now_ms).encode
        try:
            with open(args.out, "wb") as out:
                for label, findings in (("added", result.added), ("removed", result.removed)):
                    for finding in findings:
                        alert = orjson.loads(encode(finding))
                        out.write(orjson.dumps({"change": label, **alert}) + b"\n")
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror}") from exc
    if args.fail_on_lost and (lost := result.lost_at_or_above(args.fail_on_lost)):
        print(f"the new policy loses {lost:,} finding(s) of severity {args.fail_on_lost} or worse", file=sys.stderr)
        return EXIT_ALERTS
    return EXIT_OK


def _policy_test(args: argparse.Namespace) -> int:
    from monitor.replay.policy_test import junit_xml, run_file

    results = [result for path in args.files for result in run_file(path)]
    for result in results:
        print(f"{'ok  ' if result.passed else 'FAIL'} {result.file}: {result.name}")
        for failure in result.failures:
            print(f"     {failure}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if args.junit_xml:
        write_file(args.junit_xml, junit_xml(results))
    return EXIT_ALERTS if failed else EXIT_OK


def _policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.path)
    if args.explain_address is not None:
        return _explain_addresses(args, policy)
    versions = sorted(policy.all_versions(), key=lambda a: (a.id, a.effective_from_ms))
    print(f"{policy.path}: valid, version {policy.version}, {len(policy.agreements)} agreement(s)")
    for agreement in versions:
        until = format_ms(agreement.effective_until_ms) if agreement.effective_until_ms else "open-ended"
        label = f" version {agreement.version}" if agreement.version else ""
        print(
            f"- {agreement.id}{label}: {', '.join(sorted(agreement.requesters))} -> "
            f"{', '.join(sorted(agreement.disclosers))}, {format_ms(agreement.effective_from_ms)} .. {until}"
        )
        print(f"  permitted fields: {', '.join(sorted(agreement.permitted_fields)) or 'none'}")
        print(f"  required request fields: {', '.join(agreement.required_request_fields) or 'none'}")
        for restriction in agreement.restrictions:
            print(
                f"  restriction from {format_ms(restriction.from_ms)}: {', '.join(sorted(restriction.fields))} "
                f"({restriction.reason})"
            )
    return EXIT_OK


def _explain_addresses(args: argparse.Namespace, policy: Policy) -> int:
    if args.agreement is not None and args.agreement not in policy.agreements:
        raise UsageError(f"--agreement: {args.agreement!r} is not in {policy.path}")
    agreements = [a for a in policy.agreements.values() if args.agreement in (None, a.id)]
    texts = sys.stdin.read().splitlines() if args.explain_address == "-" else [args.explain_address]
    for number, text in enumerate(t for t in texts if t.strip()):
        address = explain.split_address(text)
        print(f"address {number + 1}: {explain.fields_read(address)}")
        for agreement in agreements:
            print("\n".join(explain.explain(address, agreement)))
    return EXIT_OK
