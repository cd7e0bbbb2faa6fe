"""The ``dismon`` command line (SPEC §6). Parses arguments, builds the parts, and gets out of the way.

Exit codes: 0 success (alerts found is still success), 1 alerts at or above
``--fail-on``, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import IO, Any

import orjson
from prometheus_client import CollectorRegistry

from monitor import __version__, arguments, explain
from monitor.detector import DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_MAX_JOIN_ENTRIES, Detector
from monitor.errors import DismonError, UsageError
from monitor.events import FUTURE_TOLERANCE_MS
from monitor.findings import KEY_ENV, KEY_FILE_ENV, SEVERITY_RANK, Finding, SubjectHasher
from monitor.metrics import Metrics, serve
from monitor.policy import Policy, load_policy
from monitor.replay import run_replay
from monitor.report import Comparison, count_at_or_above, load_truth, summary_lines, truth_lines
from monitor.simulate import write_scenario
from monitor.simulate.scenario import FAULTS, IRS_ICE_REQUESTS, WINDOWED_FAULTS, plan_default, plan_irs_ice
from monitor.sources import ByteCounter, DeadLetter
from monitor.timeutil import format_ms, parse_time_ms

EXIT_OK, EXIT_ALERTS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
log = logging.getLogger("dismon")


def _add_replay(commands: Any) -> None:
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
    _add_kafka_options(parser)
    parser.set_defaults(run=_replay)


def _add_simulate(commands: Any) -> None:
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


def _add_policy(commands: Any) -> None:
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


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"DISMON_{name}", default)


def _add_kafka_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kafka (flags win over DISMON_* environment variables)")
    group.add_argument(
        "--bootstrap-servers",
        default=_env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        metavar="HOST:PORT",
        help="brokers ($DISMON_BOOTSTRAP_SERVERS; default 127.0.0.1:9092)",
    )
    group.add_argument(
        "--topic-prefix",
        default=_env("TOPIC_PREFIX", "disclosure"),
        metavar="P",
        help=(
            "topics are P.requests, P.responses, P.disposals, P.alerts, P.deadletter ($DISMON_TOPIC_PREFIX; default "
            "disclosure)"
        ),
    )
    group.add_argument(
        "--group",
        default=_env("GROUP", "dismon"),
        help="consumer group and Faust app id ($DISMON_GROUP; default dismon)",
    )
    group.add_argument(
        "--security-protocol",
        default=_env("SECURITY_PROTOCOL", "PLAINTEXT"),
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="($DISMON_SECURITY_PROTOCOL)",
    )
    group.add_argument(
        "--sasl-mechanism",
        default=_env("SASL_MECHANISM"),
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="($DISMON_SASL_MECHANISM)",
    )
    group.add_argument("--sasl-username", default=_env("SASL_USERNAME"), help="($DISMON_SASL_USERNAME)")
    group.add_argument(
        "--sasl-password",
        default=_env("SASL_PASSWORD"),
        help="($DISMON_SASL_PASSWORD; prefer the variable to the flag)",
    )
    group.add_argument("--ssl-cafile", default=_env("SSL_CAFILE"), help="CA bundle for TLS ($DISMON_SSL_CAFILE)")


def _kafka_settings(args: argparse.Namespace) -> Any:
    from monitor.kafka_io import KafkaSettings

    return KafkaSettings(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        group=args.group,
        security_protocol=args.security_protocol,
        sasl_mechanism=args.sasl_mechanism,
        sasl_username=args.sasl_username,
        sasl_password=args.sasl_password,
        ssl_cafile=args.ssl_cafile,
    )


def _add_worker(commands: Any) -> None:
    parser = commands.add_parser(
        "worker",
        help="the live daemon: consume the Kafka topics, emit alerts and metrics until stopped",
        description="Consume <prefix>.requests, .responses and .disposals (created if missing, with --partitions), "
        "join and check them with the same detector as replay, and write alerts to <prefix>.alerts (key: "
        "alert_id) and invalid events to <prefix>.deadletter. Join state lives in a changelog-backed Faust "
        "table, so a restarted or rebalanced worker recovers it. Delivery is at least once: de-duplicate "
        "alerts on alert_id. Stops cleanly on SIGTERM or SIGINT; SIGHUP reloads the policy file (a broken one is "
        "refused with a log line and the policy in force stays).",
    )
    parser.add_argument("--policy", required=True, metavar="P", help="policy file (TOML)")
    parser.add_argument(
        "--partitions",
        type=arguments.positive_int,
        default=4,
        help="partitions for topics the worker creates (default 4)",
    )
    parser.add_argument(
        "--allowed-lateness",
        type=arguments.duration,
        default=DEFAULT_ALLOWED_LATENESS_MS,
        metavar="DUR",
        help="default 10m",
    )
    parser.add_argument(
        "--idle-after",
        type=arguments.idle_after,
        default="30s",
        metavar="DUR|off",
        help="after this much wall-clock silence the watermark advances with the wall clock (default 30s; 'off' never)",
    )
    parser.add_argument(
        "--metrics-host",
        default=_env("METRICS_HOST", "127.0.0.1"),
        help=(
            "address for /metrics, /healthz and /readyz (default 127.0.0.1: loopback only; set 0.0.0.0 on purpose to "
            "expose)"
        ),
    )
    parser.add_argument(
        "--metrics-port",
        type=arguments.port,
        default=_env("METRICS_PORT", "9464"),
        help="default 9464 ($DISMON_METRICS_PORT)",
    )
    parser.add_argument(
        "--session-timeout",
        type=arguments.session_timeout,
        default=30_000,
        metavar="DUR",
        help="consumer session timeout; a dead worker's partitions move after this (default 30s)",
    )
    parser.add_argument(
        "--max-join-entries",
        type=arguments.positive_int,
        default=_env("MAX_JOIN_ENTRIES", str(DEFAULT_MAX_JOIN_ENTRIES)),
        metavar="N",
        help="hold at most N request ids (over this worker's partitions); beyond it new ids "
        "are not joined, counted in dismon_join_refused_total and logged, and the DismonJoinStateFull "
        f"alert fires (default {DEFAULT_MAX_JOIN_ENTRIES:,}; $DISMON_MAX_JOIN_ENTRIES)",
    )
    parser.add_argument(
        "--dead-letter-payload",
        action="store_true",
        default=_env("DEAD_LETTER_PAYLOAD") == "1",
        help="keep the offending bytes (base64, at most 256 KiB) in dead-letter records, to repair and "
        "re-send them; they may hold personal data, so only the dead-letter topic ever gets them "
        "($DISMON_DEAD_LETTER_PAYLOAD=1; default off)",
    )
    parser.add_argument(
        "--changelog-segment",
        type=arguments.duration,
        default="10m",
        metavar="DUR",
        help="when the worker creates the join-state changelog: roll its segments (and drop its "
        "tombstones) after this long, so compaction keeps a restart's read short (default 10m)",
    )
    parser.add_argument(
        "--alertmanager-url",
        type=arguments.http_url,
        default=_env("ALERTMANAGER_URL"),
        metavar="URL",
        help="also push every finding to this Alertmanager (v2 API), retried with backoff, never "
        "blocking the stream; e.g. http://127.0.0.1:9093",
    )
    parser.add_argument(
        "--alertmanager-hold",
        type=arguments.duration,
        default=3_600_000,
        metavar="DUR",
        help="how long a pushed finding stays active in Alertmanager (default 1h)",
    )
    parser.add_argument(
        "--runbook-base",
        default=_env("RUNBOOK_BASE", "docs/runbooks/"),
        metavar="URL",
        help="prefix of the runbook link in pushed alerts: <base><rule>.md (default docs/runbooks/)",
    )
    _add_kafka_options(parser)
    parser.set_defaults(run=_worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dismon",
        description="Disclosure Monitor: joins data-sharing requests and responses, checks them against the "
        "agreement's policy, and raises alerts when data leaves that should not have.",
    )
    parser.add_argument("--version", action="version", version=f"dismon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replay(commands)
    _add_worker(commands)
    _add_simulate(commands)
    _add_policy(commands)
    return parser


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    detector = Detector(
        policy,
        SubjectHasher.from_environment(),
        args.allowed_lateness,
        observer=metrics,
        max_entries=args.max_join_entries,
    )
    if metrics is not None:
        metrics.track_state(detector.pending, lambda: detector.watermark_ms, capacity=args.max_join_entries)
    comparison = Comparison()
    with ExitStack() as stack:
        alerts_out = _open_out(stack, args.alerts_out)
        dead_out = _open_out(stack, args.dead_letter) if args.dead_letter else None

        def on_finding(finding: Finding) -> None:
            comparison.add(finding)
            now_ms = _now_ms()
            if metrics is not None:
                metrics.finding(finding, now_ms)
            alerts_out.write(orjson.dumps(finding.to_alert(now_ms)) + b"\n")

        def on_dead_letter(letter: DeadLetter) -> None:
            if metrics is not None:
                metrics.dead_letter(letter.reason)
            if dead_out is not None:
                record = letter.to_record() | {"detected_at": format_ms(_now_ms())}
                dead_out.write(orjson.dumps(record) + b"\n")

        counter = ByteCounter()
        total = sum(os.path.getsize(p) for p in args.files if os.path.isfile(p))  # a pipe's size is unknown
        progress = _progress(args.progress, total, counter, stack)
        summary = run_replay(
            args.files, detector, on_finding, on_dead_letter, until_ms, args.max_disorder,
            args.max_event_bytes, progress, counter, _now_ms() + FUTURE_TOLERANCE_MS,
            "balanced" if _read_ahead(args.read_ahead, args.files, total) else None,
        )  # fmt: skip
    lines = summary_lines(summary)
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
    try:
        serve(registry, args.metrics_host, args.metrics_port)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc.strerror}") from exc
    log.warning("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    return metrics


def _to_kafka(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.publish import publish

    with ExitStack() as stack:
        dead_out = _open_out(stack, args.dead_letter) if args.dead_letter else None

        def on_dead_letter(letter: DeadLetter) -> None:
            if dead_out is not None:
                dead_out.write(orjson.dumps(letter.to_record()) + b"\n")

        counts, invalid = asyncio.run(
            publish(
                args.files,
                _kafka_settings(args),
                on_dead_letter,
                args.max_disorder if args.max_disorder is not None else args.allowed_lateness,
                args.max_event_bytes,
                args.partitions,
            )
        )
    sent = ", ".join(f"{topic} {n:,}" for topic, n in sorted(counts.items()))
    print(
        f"published {sum(counts.values()):,} events ({sent or 'none'}); invalid, not published: {invalid:,}",
        file=sys.stderr,
    )
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from monitor import worker

    policy = load_policy(args.policy)  # a broken policy stops us here, before anything starts
    settings = worker.WorkerSettings(
        kafka=_kafka_settings(args),
        partitions=args.partitions,
        allowed_lateness_ms=args.allowed_lateness,
        idle_ms=args.idle_after,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        session_timeout_s=args.session_timeout / 1000,
        alertmanager_url=args.alertmanager_url,
        alertmanager_hold_ms=args.alertmanager_hold,
        runbook_base=args.runbook_base,
        max_join_entries=args.max_join_entries,
        dead_letter_payload=args.dead_letter_payload,
        changelog_segment_ms=args.changelog_segment,
    )
    try:
        return worker.run(settings, policy, SubjectHasher.from_environment())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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


if __name__ == "__main__":
    sys.exit(main())
