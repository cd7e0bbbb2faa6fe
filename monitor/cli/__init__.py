"""The ``dismon`` command line (SPEC §6). Parses arguments, builds the parts, and gets out of the way.

Exit codes: 0 success (alerts found is still success), 1 alerts at or above
``--fail-on``, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.cli.canary import add_canary
from monitor.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE
from monitor.cli.ledger import add_ledger
from monitor.cli.policy import add_policy
from monitor.cli.replay import add_replay
from monitor.cli.report import add_report
from monitor.cli.simulate import add_simulate
from monitor.cli.worker import add_worker
from monitor.errors import DismonError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dismon",
        description="Disclosure Monitor: joins data-sharing requests and responses, checks them against the "
        "agreement's policy, and raises alerts when data leaves that should not have.",
    )
    parser.add_argument("--version", action="version", version=f"dismon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_replay(commands)
    add_worker(commands)
    add_simulate(commands)
    add_policy(commands)
    add_canary(commands)
    add_report(commands)
    add_ledger(commands)
    return parser


class _Terminated(BaseException):
    """SIGTERM (a timeout, a job scheduler), raised where the command is, like ^C: files written so far are
    flushed and closed and a replay's reading process is stopped on the way out."""


def _terminate(_signum: int, _frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="dismon: %(levelname)s: %(message)s"
    )
    # The worker stops on SIGTERM by itself (Faust's handler, installed when it starts); the other commands here.
    previous = signal.signal(signal.SIGTERM, _terminate) if args.command != "worker" else None
    try:
        return int(args.run(args))
    except DismonError as exc:
        print(f"dismon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:  # ^C: a replay's reading process is stopped on the way out
        print("dismon: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("dismon: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
