"""``dismon report`` (a self-contained HTML audit report) and ``dismon incident`` (a draft incident report)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
from typing import Any

import orjson

from monitor.cli import arguments
from monitor.cli.common import EXIT_OK, log, read_file, write_file
from monitor.cli.worker import add_kafka_options, kafka_settings
from monitor.errors import UsageError


def add_report(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="one self-contained HTML audit report from a replay's alerts (or a time range of the alerts topic)",
        description="Write one HTML file, with charts drawn in it, that loads nothing from the network and prints "
        "well: disclosures per day (proper against improper, improper by rule, the first alert and the caps "
        "marked), findings by rule and severity, requester units and batches, the windowed findings against "
        "their baseline or cap, disposal status, and with --truth detection against the ground truth. It is "
        "built from alerts and counts, which carry no personal data. From a replay: dismon replay --alerts-out "
        "A --summary-out S ...; dismon report --alerts A --summary S. From the live alerts topic: dismon report "
        "--from T --to T (times the alerts were raised) with the worker's Kafka settings.",
    )
    parser.add_argument("--alerts", metavar="F", help="alerts as JSON lines (dismon replay --alerts-out)")
    parser.add_argument("--summary", metavar="F", help="the replay's summary (dismon replay --summary-out)")
    parser.add_argument("--truth", metavar="F", help="a simulator's truth.json")
    parser.add_argument("--from", dest="from_ms", type=arguments.timestamp, metavar="TIME",
                        help="read the alerts topic from this time (when the alerts were raised)")  # fmt: skip
    parser.add_argument("--to", dest="to_ms", type=arguments.timestamp, metavar="TIME",
                        help="... up to this time (default: now)")  # fmt: skip
    parser.add_argument("--title", default="Disclosure Monitor: audit report")
    parser.add_argument("--out", required=True, metavar="F", help="the HTML file to write")
    add_kafka_options(parser)
    parser.set_defaults(run=_report)

    parser = commands.add_parser(
        "incident",
        help="a draft incident report (Markdown and JSON) for one incident, from its alerts",
        description="Fill in what the monitor knows of one incident, as IRS Publication 1075 asks for within 24 "
        "hours: first and last disclosure, when and how it was found, the rules, the data elements (field names), "
        "the number of records and of distinct subjects, the requester units, the disposal status; and leave "
        "marked blanks for what only people know. The incident is --alert-id ... or --agreement with --since "
        "and --until (event time). Writes OUT.md and OUT.json. No personal data: built from alerts.",
    )
    parser.add_argument("--alerts", required=True, metavar="F", help="alerts as JSON lines")
    parser.add_argument("--alert-id", action="append", default=[], metavar="ID", help="an alert of the incident")
    parser.add_argument("--agreement", help="the agreement of the incident")
    parser.add_argument("--since", type=arguments.timestamp, metavar="TIME", help="event time from")
    parser.add_argument("--until", type=arguments.timestamp, metavar="TIME", help="event time up to")
    parser.add_argument("--out", required=True, metavar="PATH", help="writes PATH.md and PATH.json")
    parser.set_defaults(run=_incident)


def _report(args: argparse.Namespace) -> int:
    from monitor.outputs.alert_lines import load_alerts
    from monitor.outputs.audit_report import Audit, render

    if (args.alerts is None) == (args.from_ms is None):
        raise UsageError("give --alerts (a replay's alerts) or --from (a time range of the alerts topic)")
    if args.alerts is not None:
        lines = read_file(args.alerts).splitlines()
    else:
        from monitor.live.kafka import read_time_range

        kafka = kafka_settings(args)
        to_ms = args.to_ms if args.to_ms is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        lines = asyncio.run(read_time_range(kafka, kafka.topic("alerts"), args.from_ms, to_ms))
    summary = orjson.loads(read_file(args.summary)) if args.summary else None
    truth = orjson.loads(read_file(args.truth)) if args.truth else None
    audit = Audit(load_alerts(lines), summary, truth)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    _write(args.out, render(audit, args.title, generated).encode())
    log.info("report of %d alerts written to %s", len(audit.alerts), args.out)
    return EXIT_OK


def _incident(args: argparse.Namespace) -> int:
    from monitor.outputs.alert_lines import load_alerts
    from monitor.outputs.incident import Selection, build, to_json, to_markdown

    if not args.alert_id and args.agreement is None:
        raise UsageError("name the incident: --alert-id ID ..., or --agreement A [--since T] [--until T]")
    selection = Selection(frozenset(args.alert_id), args.agreement, args.since, args.until)
    report = build(load_alerts(read_file(args.alerts).splitlines()), selection)
    if report["alerts"] == 0:
        raise UsageError(f"no firing alert in {args.alerts} matches {selection.describe()}")
    _write(f"{args.out}.md", to_markdown(report).encode())
    _write(f"{args.out}.json", to_json(report))
    log.info("incident of %d alerts, %d records: %s.md and .json", report["alerts"], report["records"], args.out)
    return EXIT_OK


def _write(path: str, data: bytes) -> None:
    """``data`` to ``path``, its directory made if missing."""
    directory = os.path.dirname(path)
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    write_file(path, data)
