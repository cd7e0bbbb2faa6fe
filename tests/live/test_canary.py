"""The canary proves detection end to end: its probes come back while the worker detects, and the shipped
DismonDetectionBlind alert fires in a real Prometheus when the worker stops detecting while its process is
still there (SIGSTOP), and resolves once it detects again (SIGCONT)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.cli import main
from tests.live.conftest import ENV, Worker
from tests.services import REPO, free_port, metric_sum, prometheus


def _canary(bootstrap: str, prefix: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", "canary", "--bootstrap-servers", bootstrap, "--topic-prefix", prefix,
            *extra]  # fmt: skip


def _blind_alert(url: str) -> str | None:
    """DismonDetectionBlind's state in Prometheus (None when it is not active)."""
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as answer:
        alerts = json.load(answer)["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == "DismonDetectionBlind"), None)


def _wait(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not {what} within {seconds} s"
        time.sleep(0.5)


def test_a_probe_comes_back_and_a_canary_without_a_pipeline_says_so(
    kafka_bootstrap: str, scenario: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory, prefix = scenario
    worker = Worker(kafka_bootstrap, prefix, directory / "policy.toml", tmp_path / "worker.log")
    try:
        probe = subprocess.run(_canary(kafka_bootstrap, prefix, "--probes", "2", "--interval", "1s", "--metrics-port",
                                       str(free_port())), env=ENV, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert "2 of 2 probes came back" in probe.stderr
        metrics = worker.metrics()
        assert metric_sum(metrics, "dismon_findings_total", 'agreement="dismon-canary"') == 4  # two per probe
        assert metric_sum(metrics, "dismon_findings_total", 'agreement="unknown"') == 0
    finally:
        worker.stop()
    # No worker: the probe is lost, and the exit code says so.
    caplog.set_level(logging.INFO, "dismon")
    assert main(["canary", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix, "--probes", "1",
                 "--interval", "1s", "--timeout", "3s", "--metrics-port", str(free_port())]) == 1  # fmt: skip
    assert "0 of 1 probes came back" in caplog.text and "detection may be blind" in caplog.text


def test_detection_blind_fires_while_the_worker_is_stopped_and_resolves_after(
    kafka_bootstrap: str, scenario: tuple[Path, str], tmp_path: Path
) -> None:
    directory, prefix = scenario
    worker = Worker(kafka_bootstrap, prefix, directory / "policy.toml", tmp_path / "worker.log")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(REPO / "deploy/prometheus/rules/dismon.rules.yml")],
                "scrape_configs": [
                    {"job_name": "dismon-canary", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
        )
    )
    log = (tmp_path / "canary.log").open("wb")
    canary = subprocess.Popen(_canary(kafka_bootstrap, prefix, "--interval", "1s", "--metrics-port", str(port)),
                              env=ENV, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with prometheus(tmp_path, config) as url:
            _wait(lambda: _returned(port) >= 3, 60, "probes coming back")
            assert _blind_alert(url) is None
            worker.process.send_signal(signal.SIGSTOP)  # up, ready as far as its process goes, detecting nothing
            try:
                _wait(lambda: _blind_alert(url) == "firing", 60, "DismonDetectionBlind firing")
            finally:
                worker.process.send_signal(signal.SIGCONT)
            _wait(lambda: _blind_alert(url) is None, 60, "DismonDetectionBlind resolved")
    finally:
        canary.send_signal(signal.SIGTERM)
        assert canary.wait(timeout=30) == 0
        log.close()
        worker.stop()


def _returned(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return metric_sum(answer.read().decode(), "dismon_canary_probes_total", 'outcome="returned"')
    except OSError:
        return 0
