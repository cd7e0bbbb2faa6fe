"""``make live``: the daemon catching the irs-ice-2025 leak live, on a local stack, in about a minute.

    .venv/bin/python deploy/local/live.py [--requests 20000] [--seconds 60] [--exit] [--no-view]

It starts (or reuses) the local Kafka broker, then one ``dismon worker``, Prometheus with the shipped alert
rules scraping it, and Alertmanager with the shipped configuration, on free ports of 127.0.0.1 and with a
topic prefix of its own (another pipeline may use the broker meanwhile). It publishes the irs-ice-2025
scenario at a compressed pace, the June batch of requests first, then the August answers, and shows the
findings as they arrive. At the end it replays the same events and says whether the live findings equal the
replay's, whether Prometheus fires ``DisclosureFindingCritical`` and whether Alertmanager has it. It then
keeps the stack up for a look at the URLs until ^C (or, with ``--exit``, stops at once). Whatever way it
ends, it stops everything it started: the worker, Prometheus, Alertmanager, and the broker if it was not
running before. Exit status: 0 when every check passed, 1 when one did not.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, deque
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy/local/kafka.sh"
DEMO_KEY = "demo-key-not-a-secret-0001"
TOPIC_OF = {"request": "requests", "response": "responses", "disposal": "disposals"}
console = Console(stderr=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="names checked in the scenario (default 20,000)")
    parser.add_argument("--seconds", type=float, default=60, help="how long publishing takes (default 60)")
    parser.add_argument("--exit", action="store_true", help="stop everything after the summary instead of at ^C")
    parser.add_argument("--no-view", action="store_true", help="no live view, only the summary (for scripts)")
    parser.add_argument("--workdir", type=Path, help="where the scenario, configs and logs go (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dismon-live-"))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by a supervisor: clean up as for ^C
    try:
        with Stack(workdir) as stack:
            ok = run(stack, args)
            if not args.exit:
                console.print("\nThe stack stays up: press ^C to stop it.")
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")
        return 0
    return 0 if ok else 1


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


class Stack(ExitStack):
    """The processes this demo starts, stopped (and the broker, if it started it) when the block ends."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.prefix = f"live-{uuid.uuid4().hex[:8]}"
        self.ports = {name: _free_port() for name in ("worker", "prometheus", "alertmanager")}
        self.pids: dict[str, int] = {}

    def __enter__(self) -> Stack:
        super().__enter__()
        was_running = subprocess.run(["bash", str(KAFKA_SH), "status"], capture_output=True, text=True)
        started = subprocess.run(["bash", str(KAFKA_SH), "start"], capture_output=True, text=True, check=True)
        self.bootstrap = started.stdout.strip().splitlines()[-1]
        if was_running.returncode != 0:
            self.callback(subprocess.run, ["bash", str(KAFKA_SH), "stop"], capture_output=True)
        return self

    def start(self, name: str, argv: list[str], ready_url: str, env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.callback(_stop, process, log)
        self.pids[name] = process.pid
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                path = self.workdir / f"{name}.log"
                tail = "".join(path.read_text(errors="replace").splitlines(keepends=True)[-5:])
                raise SystemExit(f"{name} exited with {process.returncode}; the end of {path}:\n{tail}")
            if _status(ready_url) == 200:
                return
            time.sleep(0.3)
        raise SystemExit(f"{name} not ready within 90 s; see {self.workdir / f'{name}.log'}")


def run(stack: Stack, args: argparse.Namespace) -> bool:
    workdir, ports = stack.workdir, stack.ports
    scenario = workdir / "scenario"
    subprocess.run(
        [sys.executable, "-m", "monitor.cli", "simulate", "--scenario", "irs-ice-2025", "--requests",
         str(args.requests), "--out", str(scenario)],
        check=True, capture_output=True,
    )  # fmt: skip
    am_url, prom_url, metrics_url = (
        f"http://127.0.0.1:{ports['alertmanager']}",
        f"http://127.0.0.1:{ports['prometheus']}",
        f"http://127.0.0.1:{ports['worker']}/metrics",
    )
    stack.start(
        "alertmanager",
        [_tool("prometheus-alertmanager"), f"--config.file={REPO / 'deploy/alertmanager/alertmanager.yml'}",
         f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address=",
         f"--storage.path={workdir / 'alertmanager'}"],
        f"{am_url}/-/ready",
    )  # fmt: skip
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(REPO / "deploy/prometheus/rules/dismon.rules.yml")],
                "alerting": {"alertmanagers": [_targets(ports["alertmanager"])]},
                "scrape_configs": [{"job_name": "dismon", **_targets(ports["worker"])}],
            }
        )
    )  # fmt: skip
    stack.start(
        "prometheus",
        [_tool("prometheus"), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
         f"--storage.tsdb.path={workdir / 'prometheus'}"],
        f"{prom_url}/-/ready",
    )  # fmt: skip
    stack.start(
        "worker",
        [sys.executable, "-m", "monitor.cli", "worker", "--policy", str(scenario / "policy.toml"),
         "--bootstrap-servers", stack.bootstrap, "--topic-prefix", stack.prefix, "--metrics-port",
         str(ports["worker"]), "--alertmanager-url", am_url, "--idle-after", "off"],
        f"http://127.0.0.1:{ports['worker']}/readyz",
        env={**os.environ, "DISMON_SUBJECT_KEY": DEMO_KEY, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    console.print(
        f"[bold]Disclosure Monitor, live[/]  broker {stack.bootstrap}, topics {stack.prefix}.*\n"
        f"  worker metrics  {metrics_url}\n  Prometheus      {prom_url}/alerts\n  Alertmanager    {am_url}\n"
        f"  started: " + ", ".join(f"{name} pid {pid}" for name, pid in stack.pids.items())
    )
    with gzip.open(scenario / "events.jsonl.gz") as lines:
        events = [orjson.loads(line) for line in lines]
    live = asyncio.run(_publish_and_watch(stack, events, args.seconds, args.no_view))
    replayed = _replay(scenario, workdir)
    firing = _wait_for(lambda: _prometheus_firing(prom_url), 30)
    received = _wait_for(lambda: _alertmanager_has(am_url), 30)
    return _summary(live, replayed, firing, received, prom_url, am_url)


class Watch:
    """What the live view shows: findings by rule, the newest ones, throughput and latency."""

    def __init__(self) -> None:
        self.alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_rule: Counter[tuple[str, str]] = Counter()
        self.newest: deque[dict[str, Any]] = deque(maxlen=8)
        self.sent_at: dict[str, float] = {}  # request id -> wall time its response was published
        self.latencies: list[float] = []
        self.published = 0
        self.started = time.monotonic()
        self.phase = "starting"

    def add(self, alert: dict[str, Any]) -> None:
        key = (alert["alert_id"], alert["status"])
        if key in self.alerts:
            return  # delivered again (at least once): the same finding
        self.alerts[key] = alert
        self.by_rule[(alert["rule"], alert["severity"])] += 1
        self.newest.appendleft(alert)
        sent = self.sent_at.get(alert.get("request_id") or "")
        if sent is not None:
            self.latencies.append(time.monotonic() - sent)

    def render(self) -> Group:
        rules = Table(title="findings by rule", title_justify="left")
        for column in ("rule", "severity", "count"):
            rules.add_column(column)
        for (rule, severity), count in sorted(self.by_rule.items()):
            rules.add_row(rule, severity, f"{count:,}")
        newest = Table(title="newest alerts", title_justify="left")
        for column in ("event time", "rule", "severity", "agreement", "request id"):
            newest.add_column(column)
        for alert in self.newest:
            newest.add_row(alert["event_time"], alert["rule"], alert["severity"], alert["agreement_id"],
                           alert.get("request_id") or "-")  # fmt: skip
        elapsed = max(time.monotonic() - self.started, 1e-9)
        latency = "-"
        if self.latencies:
            ordered = sorted(self.latencies)
            p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
            latency = f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        rate = self.published / elapsed
        status = f"{self.phase}: {self.published:,} events published ({rate:,.0f}/s); response to alert: {latency}"
        return Group(status, rules, newest)


async def _publish_and_watch(stack: Stack, events: list[dict[str, Any]], seconds: float, quiet: bool) -> Watch:
    watch = Watch()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(f"{stack.prefix}.alerts", bootstrap_servers=stack.bootstrap,
                                auto_offset_reset="earliest", group_id=None)  # fmt: skip
    await producer.start()
    await consumer.start()
    last_alert = [time.monotonic()]

    async def watch_alerts() -> None:
        async for record in consumer:
            watch.add(orjson.loads(record.value))
            last_alert[0] = time.monotonic()

    reader = asyncio.create_task(watch_alerts())
    view = Live(watch.render(), console=console, refresh_per_second=4, transient=False) if not quiet else None
    try:
        if view is not None:
            view.start()
        requests = [e for e in events if e["type"] == "request"]
        answers = [e for e in events if e["type"] != "request"]
        for phase, batch, share in (
            ("June: the batch of requests", requests, 0.4),
            ("August: the answers", answers, 0.6),
        ):
            watch.phase = phase
            started, pace = time.monotonic(), max(seconds * share, 0.1) / max(len(batch), 1)
            for index, event in enumerate(batch, 1):
                if event["type"] == "response":
                    watch.sent_at[event["request_id"]] = time.monotonic()
                await producer.send(f"{stack.prefix}.{TOPIC_OF[event['type']]}", orjson.dumps(event),
                                    key=event["request_id"].encode())  # fmt: skip
                watch.published += 1
                if index % 200 == 0:
                    await asyncio.sleep(max(0.0, started + index * pace - time.monotonic()))
                    if view is not None:
                        view.update(watch.render())
            await producer.flush()
        watch.phase = "all published; waiting for the last findings"
        while time.monotonic() - last_alert[0] < 8:
            await asyncio.sleep(0.5)
            if view is not None:
                view.update(watch.render())
        watch.phase = "done"
        if view is not None:
            view.update(watch.render())
    finally:
        if view is not None:
            view.stop()
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return watch


def _replay(scenario: Path, workdir: Path) -> set[tuple[str, str]]:
    out = workdir / "replay-alerts.jsonl"
    subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--policy", str(scenario / "policy.toml"), "--alerts-out",
         str(out), str(scenario / "events.jsonl.gz")],
        check=True, capture_output=True, env={**os.environ, "DISMON_SUBJECT_KEY": DEMO_KEY},
    )  # fmt: skip
    return {(a["alert_id"], a["status"]) for a in map(orjson.loads, out.read_bytes().splitlines())}


def _summary(
    live: Watch, replayed: set[tuple[str, str]], firing: bool, received: bool, prom_url: str, am_url: str
) -> bool:
    found = set(live.alerts)
    equal = found == replayed
    table = Table(title="Disclosure Monitor, live: summary", title_justify="left", show_header=False)
    table.add_row("events published", f"{live.published:,}")
    for (rule, severity), count in sorted(live.by_rule.items()):
        table.add_row(f"  {rule} ({severity})", f"{count:,}")
    if live.latencies:
        table.add_row("response to alert", f"median {statistics.median(live.latencies) * 1000:.0f} ms")
    verdict = "equal" if equal else f"differ: {len(replayed - found):,} missing, {len(found - replayed):,} extra"
    table.add_row("live findings vs replay", f"{len(found):,} vs {len(replayed):,}: {verdict}")
    table.add_row("Prometheus", f"DisclosureFindingCritical {'firing' if firing else 'NOT firing'} ({prom_url}/alerts)")
    table.add_row("Alertmanager", f"{'has' if received else 'does NOT have'} DisclosureFindingCritical ({am_url})")
    console.print(table)
    return equal and firing and received


def _prometheus_firing(url: str) -> bool:
    answer = _json(f"{url}/api/v1/alerts")
    alerts = answer.get("data", {}).get("alerts", []) if answer else []
    return any(a["labels"].get("alertname") == "DisclosureFindingCritical" and a["state"] == "firing" for a in alerts)


def _alertmanager_has(url: str) -> bool:
    alerts = _json(f"{url}/api/v2/alerts?filter=alertname%3D%22DisclosureFindingCritical%22") or []
    return bool(alerts)


def _wait_for(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _stop(process: subprocess.Popen[bytes], log: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()


def _targets(port: int) -> dict[str, Any]:
    return {"static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is missing: `make setup` installs it (deploy/local/tools.sh)")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
