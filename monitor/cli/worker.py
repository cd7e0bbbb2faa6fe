"""``dismon worker``: the live daemon's options (flags or ``$DISMON_*``) and its start."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from monitor.cli import arguments
from monitor.cli.common import env
from monitor.config import ledger_key_pem, load_policy, subject_hasher
from monitor.core.detector import DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_MAX_JOIN_ENTRIES

DEFAULT_STATE_DIR = os.path.join(tempfile.gettempdir(), "dismon-state")


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kafka (flags win over DISMON_* environment variables)")
    group.add_argument(
        "--bootstrap-servers",
        default=env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        metavar="HOST:PORT",
        help="brokers ($DISMON_BOOTSTRAP_SERVERS; default 127.0.0.1:9092)",
    )
    group.add_argument(
        "--topic-prefix",
        default=env("TOPIC_PREFIX", "disclosure"),
        metavar="P",
        help=(
            "topics are P.requests, P.responses, P.disposals, P.alerts, P.deadletter ($DISMON_TOPIC_PREFIX; default "
            "disclosure)"
        ),
    )
    group.add_argument(
        "--group",
        default=env("GROUP", ""),
        help=(
            "consumer group and Faust app id; the group's own topics are named after it ($DISMON_GROUP; default "
            "dismon-PREFIX, so pipelines of different topic prefixes never share state). A group that holds "
            "offsets of another pipeline's input topics is refused."
        ),
    )
    group.add_argument(
        "--security-protocol",
        default=env("SECURITY_PROTOCOL", "PLAINTEXT"),
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="($DISMON_SECURITY_PROTOCOL)",
    )
    group.add_argument(
        "--sasl-mechanism",
        default=env("SASL_MECHANISM"),
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="($DISMON_SASL_MECHANISM)",
    )
    group.add_argument("--sasl-username", default=env("SASL_USERNAME"), help="($DISMON_SASL_USERNAME)")
    group.add_argument(
        "--sasl-password",
        default=env("SASL_PASSWORD"),
        help="($DISMON_SASL_PASSWORD; prefer the variable to the flag)",
    )
    group.add_argument("--ssl-cafile", default=env("SSL_CAFILE"), help="CA bundle for TLS ($DISMON_SSL_CAFILE)")


def kafka_settings(args: argparse.Namespace) -> Any:
    from monitor.live.kafka import KafkaSettings

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


def add_worker(commands: Any) -> None:
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
        default=env("METRICS_HOST", "127.0.0.1"),
        help=(
            "address for /metrics, /healthz and /readyz (default 127.0.0.1: loopback only; set 0.0.0.0 on purpose to "
            "expose)"
        ),
    )
    parser.add_argument(
        "--metrics-port",
        type=arguments.port,
        default=env("METRICS_PORT", "9464"),
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
        default=env("MAX_JOIN_ENTRIES", str(DEFAULT_MAX_JOIN_ENTRIES)),
        metavar="N",
        help="hold at most N request ids (over this worker's partitions); beyond it new ids "
        "are not joined, counted in dismon_join_refused_total and logged, and the DismonJoinStateFull "
        f"alert fires (default {DEFAULT_MAX_JOIN_ENTRIES:,}; $DISMON_MAX_JOIN_ENTRIES)",
    )
    parser.add_argument(
        "--dead-letter-payload",
        action="store_true",
        default=env("DEAD_LETTER_PAYLOAD") == "1",
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
        default=env("ALERTMANAGER_URL"),
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
        default=env("RUNBOOK_BASE", "docs/runbooks/"),
        metavar="URL",
        help="prefix of the runbook link in pushed alerts: <base><rule>.md (default docs/runbooks/)",
    )
    parser.add_argument(
        "--instance-id",
        default=env("INSTANCE_ID"),
        metavar="ID",
        help="a stable identity in the consumer group (static membership): restarted within the session timeout, "
        "the worker takes its partitions back without a rebalance; another process with the same ID stops the "
        "first; one per worker, e.g. a StatefulSet pod's name ($DISMON_INSTANCE_ID; default none)",
    )
    parser.add_argument(
        "--state-dir",
        default=env("STATE_DIR"),
        metavar="DIR",
        help="keep a copy of the join state on local disk here, so that a restart in place reads only the "
        "changelog written since; give each worker its own, e.g. a StatefulSet volume; 'none' reads the whole "
        f"changelog on every start ($DISMON_STATE_DIR; default {DEFAULT_STATE_DIR}, where the first worker on the "
        "machine takes it and others run without; see docs/worker.md)",
    )
    parser.add_argument(
        "--standby",
        action=argparse.BooleanOptionalAction,
        default=env("STANDBY", "on") != "off",
        help="follow the join state of the partitions other workers own, so that when one dies the worker that "
        "takes its partitions over reads only what was written since; costs memory for their entries "
        "($DISMON_STANDBY=on|off; default on)",
    )
    parser.add_argument(
        "--ledger-key",
        default=env("LEDGER_KEY_FILE"),
        metavar="FILE",
        help="keep the accounting of disclosures in <prefix>.ledger, its checkpoints signed with this Ed25519 key "
        "from dismon ledger keygen ($DISMON_LEDGER_KEY_FILE, or the PEM itself in $DISMON_LEDGER_KEY; see "
        "docs/ledger.md)",
    )
    parser.add_argument(
        "--ledger-checkpoint-interval",
        type=arguments.duration,
        default="1m",
        metavar="DUR",
        help="how often the ledger's tree is signed into <prefix>.ledger-checkpoints (default 1m; also when the "
        "worker stops or gives the ledger up)",
    )
    parser.add_argument(
        "--shadow-policy",
        default=env("SHADOW_POLICY"),
        metavar="FILE",
        help="also judge the stream under this candidate policy: its findings go to <prefix>.shadow-alerts and "
        "dismon_shadow_findings_total, never to the alerts topic or Alertmanager; SIGHUP reloads it too "
        "($DISMON_SHADOW_POLICY; see docs/policy.md)",
    )
    add_kafka_options(parser)
    parser.set_defaults(run=_worker)


def _worker(args: argparse.Namespace) -> int:
    from monitor.live.faust import worker
    from monitor.live.settings import WorkerSettings

    policy = load_policy(args.policy)  # a broken policy stops us here, before anything starts
    shadow = None if args.shadow_policy is None else load_policy(args.shadow_policy)
    ledger_key = ledger_key_pem(args.ledger_key)
    if ledger_key is not None:
        from monitor.outputs.ledger import load_signing_key

        load_signing_key(ledger_key, args.ledger_key or "$DISMON_LEDGER_KEY")  # a wrong key stops us here
    settings = WorkerSettings(
        kafka=kafka_settings(args),
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
        ledger_key=ledger_key,
        instance_id=args.instance_id or None,
        state_dir=None if args.state_dir in ("none", "") else args.state_dir or DEFAULT_STATE_DIR,
        state_dir_default=args.state_dir is None,
        standby=args.standby,
        ledger_interval_ms=args.ledger_checkpoint_interval,
    )
    return worker.run(settings, policy, subject_hasher(), shadow)
