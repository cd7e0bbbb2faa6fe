"""The whole operations path for real: a worker on the local broker, scraped by Prometheus (with the shipped
alert rules), pushing findings to Alertmanager; every dashboard panel's query runs through Prometheus' API."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from monitor.cli import main
from tests.live.conftest import (
    ENV,
    KINDS,
    STARTED,
    Worker,
    consume_all,
    create_topics,
    produce,
    publish,
    tight_daily_cap,
)
from tests.services import REPO, alertmanager, free_port, metric_sum, prometheus

#: What Grafana substitutes in panel queries, at the scale of a test that lasts a minute.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "15s", "$__range": "5m", "$agreement": ".*"}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def _prometheus_config(directory: Path, worker_port: int, canary_port: int, alertmanager_url: str) -> Path:
    config = directory / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(REPO / "deploy/prometheus/rules/dismon.rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.split("//")[1]]}]}]},
                "scrape_configs": [
                    {"job_name": "dismon", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
                    {"job_name": "dismon-canary", "static_configs": [{"targets": [f"127.0.0.1:{canary_port}"]}]},
                ],
            }
        )
    )
    return config


def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {seconds} s"
        time.sleep(0.5)


def test_worker_prometheus_rules_alertmanager_and_every_dashboard_query(
    kafka_bootstrap: str, tmp_path: Path, capsys: Any
) -> None:
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "800",
                "--fault",
                "all",
                "--seed",
                "5",
                "--fault-rate",
                "0.05",
            ]
        )
        == 0
    )
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    shutil.copy(tmp_path / "policy.toml", candidate / "policy.toml")
    tight_daily_cap(candidate, cap=5)  # a shadow candidate with findings the policy in force has not
    prefix = f"obs{int(time.time() * 1000) % 10**9}"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    published = publish(tmp_path, kafka_bootstrap, prefix, capsys)
    garbage = [(f"{prefix}.{KINDS[i % 3]}", None, b"junk", b"{not json" * (i + 1)) for i in range(6)]
    asyncio.run(produce(kafka_bootstrap, garbage))

    with alertmanager(tmp_path) as am_url:
        worker = Worker(
            kafka_bootstrap,
            prefix,
            tmp_path / "policy.toml",
            tmp_path / "worker.log",
            extra=("--alertmanager-url", am_url, "--shadow-policy", str(candidate / "policy.toml")),
        )
        canary_port = free_port()
        canary_log = (tmp_path / "canary.log").open("wb")
        canary = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "canary", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix",
             prefix, "--interval", "1s", "--metrics-port", str(canary_port)],
            env=ENV, stdout=canary_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            worker.wait_for_events(published)
            with prometheus(tmp_path, _prometheus_config(tmp_path, worker.port, canary_port, am_url)) as prom:
                # The shipped rules load and evaluate cleanly.
                _until(
                    lambda: all(
                        r.get("lastEvaluation", "").startswith("2") and r["health"] == "ok"
                        for g in _get(f"{prom}/api/v1/rules")["data"]["groups"]
                        for r in g["rules"]
                    ),
                    30,
                    "evaluating every rule",
                )
                groups = _get(f"{prom}/api/v1/rules")["data"]["groups"]
                assert sum(len(g["rules"]) for g in groups) == 12
                # A backfilled scenario with critical findings makes the findings rule fire in Prometheus.
                _until(
                    lambda: any(
                        a["labels"]["alertname"] == "DisclosureFindingCritical"
                        for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
                    ),
                    60,
                    "firing DisclosureFindingCritical",
                )
                time.sleep(3)  # a few more scrapes, so rates have two points
                empty = _empty_panels(prom)
                assert not empty, f"panels whose query returned no data: {empty}"
                # The canary's probes came back all along: detection was never blind.
                alerts = _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
                assert not any(a["labels"]["alertname"] == "DismonDetectionBlind" for a in alerts)
            # Every finding the worker emitted was pushed to Alertmanager, one alert per alert_id.
            exposition = worker.metrics()
            emitted = metric_sum(exposition, "dismon_findings_total{", 'status="firing"')
            assert emitted > 0
            _until(lambda: len(_alertmanager_findings(am_url)) >= emitted, 30, "all findings in Alertmanager")
            assert len(_alertmanager_findings(am_url)) == emitted
        finally:
            canary.terminate()
            assert canary.wait(timeout=30) == 0
            canary_log.close()
            assert worker.stop() == 0
            STARTED.clear()
        # The shadow candidate's findings went to their own topic and metric, and never to Alertmanager.
        assert metric_sum(exposition, "dismon_shadow_findings_total{", 'rule="daily_cap_exceeded"') > 0
        live = {a["alert_id"] for _, a in asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))}
        shadow = {a["alert_id"] for _, a in asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.shadow-alerts"))}
        pushed = _alertmanager_findings(am_url)
        assert shadow - live and not (shadow - live) & pushed
        assert pushed <= live


def _alertmanager_findings(url: str) -> set[str]:
    alerts = _get(f"{url}/api/v2/alerts")
    return {a["labels"]["alert_id"] for a in alerts if a["labels"].get("alertname") == "DisclosureFinding"}


def _empty_panels(prom: str) -> list[str]:
    empty = []
    for path in sorted((REPO / "dashboards").glob("*.json")):
        document = json.loads(path.read_text())
        for panel in document["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                answer = _get(
                    f"{prom}/api/v1/query_range?"
                    + urllib.parse.urlencode(
                        {"query": expr, "start": time.time() - 60, "end": time.time(), "step": "2"}
                    )
                )
                assert answer["status"] == "success", (path.name, panel["title"], answer)
                if not answer["data"]["result"]:
                    empty.append(f"{path.name}: {panel['title']}: {expr}")
    return empty
