"""``dismon canary``: probes a running pipeline end to end and says, in metrics, when detection last worked."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

from monitor.cli import arguments
from monitor.cli.common import EXIT_ALERTS, EXIT_OK, env, log
from monitor.cli.worker import add_kafka_options, kafka_settings


def add_canary(commands: Any) -> None:
    parser = commands.add_parser(
        "canary",
        help="publish a probe every interval and expect its findings on the alerts topic (DismonDetectionBlind)",
        description="Every --interval, publish a request and a disclosing response under the reserved agreement "
        "'dismon-canary' (synthetic: no person's data) into <prefix>.requests and .responses, keyed by the "
        "request id, and wait for both of their unauthorized_party findings on <prefix>.alerts: the request's "
        "at once, the response's once the join has paired it. /metrics gives "
        "dismon_canary_last_success_timestamp_seconds and the round trip; the shipped DismonDetectionBlind "
        "alert fires when no probe has come back for three intervals, even while the worker says it is up. "
        "Probes carry the wall-clock time: run it against a live pipeline, not a replay of old traffic. "
        "Findings of agreement 'dismon-canary' never page (deploy/alertmanager/alertmanager.yml routes them "
        "to a receiver of their own) and the finding alerts and dashboards leave them out. Stops on SIGTERM "
        "or SIGINT.",
    )
    parser.add_argument(
        "--interval", type=arguments.duration, default="30s", metavar="DUR", help="between probes (default 30s)"
    )
    parser.add_argument(
        "--timeout",
        type=arguments.duration,
        default=None,
        metavar="DUR",
        help="a probe not back within this is lost and logged (default: 3 intervals)",
    )
    parser.add_argument(
        "--probes",
        type=arguments.positive_int,
        default=None,
        metavar="N",
        help="send N probes and exit: 0 if every one came back, 1 if not (a check for scripts)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env("CANARY_METRICS_HOST", "127.0.0.1"),
        help="address for /metrics (default 127.0.0.1; $DISMON_CANARY_METRICS_HOST)",
    )
    parser.add_argument(
        "--metrics-port",
        type=arguments.port,
        default=env("CANARY_METRICS_PORT", "9465"),
        help="default 9465 ($DISMON_CANARY_METRICS_PORT)",
    )
    add_kafka_options(parser)
    parser.set_defaults(run=_canary)


def _canary(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from monitor.live.canary import Canary
    from monitor.outputs.endpoints import listen, serve
    from monitor.outputs.metrics import CanaryMetrics

    interval_s = args.interval / 1000
    timeout_s = (args.timeout or 3 * args.interval) / 1000
    listener = listen(args.metrics_host, args.metrics_port)  # a busy port is a usage error before anything starts
    registry = CollectorRegistry()
    canary = Canary(kafka_settings(args), interval_s, timeout_s, CanaryMetrics(registry, interval_s, time.time()))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(registry, lambda: None, listener)
        log.info("canary probing %s every %.0f s", args.topic_prefix, interval_s)
        await canary.run(stop, args.probes)

    try:
        asyncio.run(main())
    finally:
        listener.close()
    if args.probes is not None:
        log.info("%d of %d probes came back", canary.returned, args.probes)
        return EXIT_OK if canary.lost == 0 else EXIT_ALERTS
    return EXIT_OK
