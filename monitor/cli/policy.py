"""``dismon policy check``: validate a policy file, or show how it judges an address."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from monitor.cli.common import EXIT_OK
from monitor.config import load_policy
from monitor.core import explain
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


def _policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.path)
    if args.explain_address is not None:
        return _explain_addresses(args, policy)
    print(f"{policy.path}: valid, version {policy.version}, {len(policy.agreements)} agreement(s)")
    for agreement in policy.agreements.values():
        until = format_ms(agreement.effective_until_ms) if agreement.effective_until_ms else "open-ended"
        print(
            f"- {agreement.id}: {', '.join(sorted(agreement.requesters))} -> {', '.join(sorted(agreement.disclosers))},"
            f" {format_ms(agreement.effective_from_ms)} .. {until}"
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
