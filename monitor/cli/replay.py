"""``dismon replay``: the detectors over historical logs, or (``--to-kafka``) the logs into the topics."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from monitor.cli import arguments
from monitor.cli.common import EXIT_ALERTS, EXIT_OK, env, log, now_ms
from monitor.cli.worker import add_kafka_options, kafka_settings
from monitor.config import KEY_ENV, KEY_FILE_ENV, ledger_key_pem, load_policy, subject_hasher
from monitor.core.detector import DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_MAX_JOIN_ENTRIES, Detector
from monitor.core.events import FUTURE_TOLERANCE_MS
from monitor.core.findings import SEVERITY_RANK, Finding
from monitor.core.policy import Policy
from monitor.core.timeutil import format_ms
from monitor.errors import UsageError
from monitor.outputs import endpoints
from monitor.outputs.alerts import FindingSender, dead_letter_record
from monitor.outputs.metrics import Metrics
from monitor.replay.report import (
    Comparison,
    DisclosureTally,
    count_at_or_above,
    load_truth,
    summary_document,
    summary_lines,
    truth_lines,
)
from monitor.replay.run import ReplayOptions, run_replay
from monitor.replay.sources import ByteCounter, DeadLetter, ReadOptions

if TYPE_CHECKING:
    from monitor.outputs.ledger import LedgerWriter


def add_replay(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="run the detectors over historical JSONL(.gz) event logs",
        description="Run the detectors over historical event logs in event-time order, exactly as the live "
        "worker would. Alerts go out as JSON lines; a summary goes to stderr.",
        epilog=f"The subject hash key comes from ${KEY_ENV} or the file named by ${KEY_FILE_ENV} "
        "(at least 16 bytes); without one, a random per-run key is used and subject_ref values will not "
        "match across runs. Example: dismon replay --policy policy.toml --alerts-out alerts.jsonl logs/*.jsonl.gz",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="JSONL or JSONL.gz logs (files or pipes), or - for stdin"
    )
    parser.add_argument("--policy", required=True, metavar="P", help="policy file (TOML)")
    parser.add_argument(
        "--alerts-out", default="-", metavar="F", help="where alerts go, as JSON lines (default: stdout)"
    )
    parser.add_argument("--dead-letter", metavar="F", help="write invalid-event records (reason, file, line) here")
    parser.add_argument(
        "--summary-out",
        metavar="F",
        help="also write the summary as JSON here (counts, disclosures per day; no personal data), for dismon report",
    )
    parser.add_argument(
        "--until",
        type=arguments.timestamp,
        metavar="TIME",
        help="advance event time to TIME after the last event, so timers due by then fire",
    )
    parser.add_argument(
        "--allowed-lateness",
        type=arguments.duration,
        default=DEFAULT_ALLOWED_LATENESS_MS,
        metavar="DUR",
        help="how far behind the newest event time an event may be and still count as on time (default: 10m)",
    )
    parser.add_argument(
        "--max-disorder",
        type=arguments.duration,
        metavar="DUR",
        help="reorder buffer per input file, in event time (default: the allowed lateness)",
    )
    parser.add_argument(
        "--fail-on",
        choices=sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__),
        help="exit 1 if any alert has this severity or higher",
    )
    parser.add_argument(
        "--max-event-bytes",
        type=arguments.positive_int,
        default=64 * 1024,
        metavar="N",
        help="events larger than this are dead-lettered as oversized (default: 65536)",
    )
    parser.add_argument(
        "--ground-truth",
        metavar="F",
        help=(
            "a simulator truth.json: report found/missed/unexpected and how early the fault was caught (implies "
            "--until from the file unless given)"
        ),
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--read-ahead",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "decompress, validate and order the input in a second process, which also takes over a share of the "
            "per-event checks, so two cores share the work; same findings and dead letters (default: when two or more "
            "CPUs are available, every input is a regular file, not stdin or a pipe, and the input is at least 1 MiB)"
        ),
    )
    parser.add_argument(
        "--max-join-entries",
        type=arguments.positive_int,
        default=DEFAULT_MAX_JOIN_ENTRIES,
        metavar="N",
        help=(
            "hold at most N request ids in the join state; events of new ids beyond it are not joined, and the "
            f"summary says so (default {DEFAULT_MAX_JOIN_ENTRIES:,})"
        ),
    )
    parser.add_argument(
        "--metrics-port",
        type=arguments.port,
        metavar="PORT",
        help=(
            "serve the worker's Prometheus metrics on http://HOST:PORT/metrics while the replay runs, so it can be "
            "watched in Grafana"
        ),
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --metrics-port (default 127.0.0.1: loopback only)",
    )
    parser.add_argument(
        "--metrics-linger",
        type=arguments.duration,
        default=0,
        metavar="DUR",
        help="keep serving metrics this long after the replay ends, for a last scrape (default: 0)",
    )
    parser.add_argument(
        "--ledger",
        metavar="DIR",
        help="keep the accounting of disclosures: an entry for every disclosing response, in a Merkle-tree "
        "ledger with signed checkpoints in DIR, appended to across runs (docs/ledger.md)",
    )
    parser.add_argument(
        "--ledger-key",
        default=env("LEDGER_KEY_FILE"),
        metavar="FILE",
        help="the Ed25519 key that signs the ledger's checkpoints, from dismon ledger keygen ($DISMON_LEDGER_KEY_FILE)",
    )
    parser.add_argument(
        "--to-kafka",
        action="store_true",
        help=(
            "instead of detecting, publish the logs into the Kafka topics in event-time order (key: request_id, Kafka "
            "timestamp: event time) to backfill or rehearse"
        ),
    )
    parser.add_argument(
        "--partitions",
        type=arguments.positive_int,
        default=4,
        help="with --to-kafka: partitions for the topics it creates, as the worker would (default 4)",
    )
    add_kafka_options(parser)
    parser.set_defaults(run=_replay)


def _open_out(stack: ExitStack, path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdout.buffer
    try:
        return stack.enter_context(open(path, "wb"))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def _progress(
    enabled: bool | None, total_bytes: int, counter: ByteCounter, stack: ExitStack
) -> Callable[[int], None] | None:
    if not (sys.stderr.isatty() if enabled is None else enabled):
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    bar = stack.enter_context(
        Progress(
            TextColumn("replay"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[events]:,} events"),
            TimeRemainingColumn(),
            transient=True,
            console=None,
        )
    )
    task = bar.add_task("replay", total=total_bytes or None, events=0)
    return lambda events: bar.update(task, completed=counter.consumed(), events=events)


def _replay(args: argparse.Namespace) -> int:
    for path in args.files:  # files, or pipes: a named pipe or bash's <(zcat log.gz) both work
        if path != "-" and not os.path.exists(path):
            raise UsageError(f"no such file: {path}")
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory: name the log files in it (e.g. {path}/*.jsonl.gz)")
    policy = load_policy(args.policy)
    if args.to_kafka:
        return _to_kafka(args)
    truth = load_truth(args.ground_truth) if args.ground_truth else None
    until_ms = args.until if args.until is not None else (truth.until_ms if truth else None)
    metrics = _replay_metrics(args, policy)
    tally = DisclosureTally(metrics) if args.summary_out else None  # an observer costs per event: only if asked
    ledger = _ledger(args)
    detector = Detector(
        policy,
        subject_hasher(),
        args.allowed_lateness,
        observer=tally or metrics,
        max_entries=args.max_join_entries,
        accounting=None if ledger is None else ledger.append,
    )
    if metrics is not None:
        metrics.track_state(detector.pending, lambda: detector.watermark_ms, capacity=args.max_join_entries)
    comparison = Comparison()
    with ExitStack() as stack:
        alerts_out = _open_out(stack, args.alerts_out)
        dead_out = _open_out(stack, args.dead_letter) if args.dead_letter else None
        summary_out = _open_out(stack, args.summary_out) if args.summary_out else None

        encode = FindingSender(now_ms, metrics).encode

        def on_finding(finding: Finding) -> None:
            comparison.add(finding)
            alerts_out.write(encode(finding) + b"\n")

        def on_dead_letter(letter: DeadLetter) -> None:
            if metrics is not None:
                metrics.dead_letter(letter.reason)
            if dead_out is not None:
                dead_out.write(dead_letter_record(letter.reason, letter.where, now_ms()) + b"\n")

        counter = ByteCounter()
        total = sum(os.path.getsize(p) for p in args.files if os.path.isfile(p))  # a pipe's size is unknown
        progress = _progress(args.progress, total, counter, stack)
        options = ReplayOptions(
            _read_options(args), until_ms, "balanced" if _read_ahead(args.read_ahead, args.files, total) else None
        )
        try:
            summary = run_replay(args.files, detector, on_finding, on_dead_letter, options, progress, counter)
        finally:
            checkpoint = None if ledger is None else ledger.close()  # what was judged is accounted, even on ^C
        if summary_out is not None and tally is not None:
            summary_out.write(summary_document(summary, tally, args.files, args.policy))
    lines = summary_lines(summary)
    if ledger is not None and checkpoint is not None:
        lines.append(
            f"ledger {args.ledger}: {ledger.appended:,} entries appended; checkpoint: {checkpoint.size:,} entries, "
            f"root {checkpoint.root}, signed by key {checkpoint.key_id} at {checkpoint.time}"
        )
    if until_ms is not None:
        lines.insert(1, f"clock advanced to {format_ms(until_ms)} after the last event")
    if truth is not None:
        lines += truth_lines(comparison, truth)
    print("\n".join(lines), file=sys.stderr)
    if metrics is not None and args.metrics_linger:
        time.sleep(args.metrics_linger / 1000)
    if args.fail_on and count_at_or_above(summary.alerts_by_severity, SEVERITY_RANK[args.fail_on], SEVERITY_RANK):
        return EXIT_ALERTS
    return EXIT_OK


def _ledger(args: argparse.Namespace) -> LedgerWriter | None:
    if args.ledger is None:
        return None
    from monitor.outputs.ledger import LedgerWriter, load_signing_key  # cryptography: only when asked for

    pem = ledger_key_pem(args.ledger_key)
    if pem is None:
        raise UsageError("--ledger needs the checkpoints' signing key: --ledger-key FILE, $DISMON_LEDGER_KEY_FILE or "
                         "$DISMON_LEDGER_KEY (dismon ledger keygen makes one)")  # fmt: skip
    return LedgerWriter(Path(args.ledger), load_signing_key(pem, args.ledger_key or "$DISMON_LEDGER_KEY"), now_ms)


def _read_options(args: argparse.Namespace) -> ReadOptions:
    disorder = args.allowed_lateness if args.max_disorder is None else args.max_disorder
    return ReadOptions(disorder, args.max_event_bytes, now_ms() + FUTURE_TOLERANCE_MS)


_READ_AHEAD_MIN_BYTES = 1 << 20  # below this, starting a process costs more than it saves


def _read_ahead(requested: bool | None, files: list[str], total_bytes: int) -> bool:
    streams = [path for path in files if path == "-" or not os.path.isfile(path)]
    if requested and streams:
        what = "stdin (-)" if streams[0] == "-" else f"{streams[0]}, which is not a regular file"
        raise UsageError(f"--read-ahead cannot read {what}: a second process cannot share it")
    if requested is not None:
        return requested
    return not streams and len(os.sched_getaffinity(0)) > 1 and total_bytes >= _READ_AHEAD_MIN_BYTES


def _replay_metrics(args: argparse.Namespace, policy: Policy) -> Metrics | None:
    if args.metrics_port is None:
        return None
    registry = CollectorRegistry()
    metrics = Metrics(registry, policy)
    endpoints.serve_in_thread(registry, endpoints.listen(args.metrics_host, args.metrics_port))
    log.warning("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    return metrics


def _to_kafka(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.replay.publish import publish

    with ExitStack() as stack:
        dead_out = _open_out(stack, args.dead_letter) if args.dead_letter else None

        def on_dead_letter(letter: DeadLetter) -> None:
            if dead_out is not None:
                dead_out.write(dead_letter_record(letter.reason, letter.where, now_ms()) + b"\n")

        counts, invalid = asyncio.run(
            publish(
                kafka_settings(args),
                args.files,
                on_dead_letter,
                _read_options(args),  # the worker refuses event times past this run's clock skew bound too
                args.partitions,
            )
        )
    sent = ", ".join(f"{topic} {n:,}" for topic, n in sorted(counts.items()))
    print(
        f"published {sum(counts.values()):,} events ({sent or 'none'}); invalid, not published: {invalid:,}",
        file=sys.stderr,
    )
    return EXIT_OK
