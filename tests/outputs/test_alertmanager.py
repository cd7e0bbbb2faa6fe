"""The Alertmanager sink against a real Alertmanager (Debian's), and the shipped alertmanager.yml."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.core.findings import Finding
from monitor.core.timeutil import parse_time_ms
from monitor.outputs.alertmanager import ALERTNAME, AlertmanagerSink, to_alertmanager
from tests.services import REPO, alertmanager, free_port, tool

CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
EVENT_MS = parse_time_ms("2025-08-07T10:00:00Z")


def finding(
    request_id: str,
    rule: str = "incomplete_request_disclosure",
    severity: str = "critical",
    agreement: str = "irs-ice-2025",
) -> Finding:
    return Finding(
        alert_id=f"id-{rule}-{request_id}",
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        agreement_id=agreement,
        request_id=request_id,
        requester={"agency": "ICE", "unit": "ERO"},
        event_time_ms=EVENT_MS,
        detected_stream_ms=EVENT_MS,
        summary=f"{rule} on a request",
        subject_ref="ref:abc",
        details={"failed": ["placeholder"]},
    )


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as answer:
        result: list[dict[str, Any]] = json.load(answer)
        return result


async def _push_until(sink: AlertmanagerSink, done: Any, seconds: float = 30) -> None:
    runner = asyncio.create_task(sink.run())
    try:
        deadline = time.monotonic() + seconds
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, "Alertmanager never got the alerts"
            await asyncio.sleep(0.2)
    finally:
        runner.cancel()


def test_config_is_valid_and_routes_critical_to_the_pager_warnings_to_tickets_and_the_canary_nowhere() -> None:
    amtool = tool("amtool")
    check = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    def route(*labels: str) -> str:
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert route("severity=critical", "rule=incomplete_request_disclosure", "agreement=a1") == "pager"
    assert route("severity=warning", "rule=response_sla_breach", "agreement=a1") == "ticket"
    assert route("alertname=DismonWorkerDown", "severity=critical") == "pager"
    assert route("severity=critical", "rule=unauthorized_party", "agreement=dismon-canary") == "canary"
    assert route("alertname=DismonDetectionBlind", "severity=critical") == "pager"


def test_findings_reach_alertmanager_grouped_per_rule_and_agreement_with_warnings_inhibited(tmp_path: Path) -> None:
    with alertmanager(tmp_path) as url:
        sink = AlertmanagerSink(url, CollectorRegistry())
        now_ms = int(time.time() * 1000)
        for i in range(50):  # one incident: 50 critical findings of one rule on one agreement
            sink.submit(finding(f"r{i}"), now_ms)
        sink.submit(finding("r0", rule="response_sla_breach", severity="warning"), now_ms)
        sink.submit(finding("x1", agreement="other-agreement"), now_ms)
        asyncio.run(_push_until(sink, lambda: len(_alerts(url)) == 52))
        alerts = _alerts(url)
        assert sink.pushed._value.get() == 52
        one = next(a for a in alerts if a["labels"]["alert_id"] == "id-incomplete_request_disclosure-r1")
        assert one["labels"] | {} == {
            "alertname": ALERTNAME,
            "rule": "incomplete_request_disclosure",
            "severity": "critical",
            "agreement": "irs-ice-2025",
            "requester_agency": "ICE",
            "requester_unit": "ERO",
            "alert_id": "id-incomplete_request_disclosure-r1",
        }
        assert one["annotations"]["runbook"] == "docs/runbooks/incomplete_request_disclosure.md"
        assert one["receivers"] == [{"name": "pager"}]
        # The warning on the agreement with a firing critical is inhibited; the other agreement's critical is not.
        warning = next(a for a in alerts if a["labels"]["severity"] == "warning")
        assert warning["status"]["state"] == "suppressed" and warning["status"]["inhibitedBy"]
        with urllib.request.urlopen(f"{url}/api/v2/alerts/groups", timeout=5) as answer:
            groups = json.load(answer)
        critical_groups = [g for g in groups if g["receiver"]["name"] == "pager"]
        assert sorted(len(g["alerts"]) for g in critical_groups) == [1, 50]  # 50 bad disclosures: one page


def test_unreachable_alertmanager_is_retried_with_backoff_and_counted(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sink = AlertmanagerSink(url, CollectorRegistry(), backoff_s=(0.1, 0.5))
    sink.submit(finding("late"), int(time.time() * 1000))

    async def scenario() -> None:
        runner = asyncio.create_task(sink.run())
        while sink.failures._value.get() < 3:  # nobody listens yet
            await asyncio.sleep(0.05)
        with alertmanager(tmp_path, port=port):
            deadline = time.monotonic() + 30
            while not await asyncio.to_thread(lambda: len(_alerts(url)) == 1):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        runner.cancel()

    asyncio.run(scenario())
    assert sink.pushed._value.get() == 1


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    sink = AlertmanagerSink("http://127.0.0.1:9", CollectorRegistry(), max_queue=3)
    for i in range(5):
        sink.submit(finding(f"r{i}"), EVENT_MS)
    assert sink.dropped._value.get() == 2
    assert [a["labels"]["alert_id"] for a in sink._queue] == [
        f"id-incomplete_request_disclosure-r{i}" for i in (2, 3, 4)
    ]


def test_resolved_findings_end_now_and_alerts_carry_no_personal_data() -> None:
    firing = to_alertmanager(finding("r1"), EVENT_MS + 1000, hold_ms=60_000)
    assert firing["endsAt"] == "2025-08-07T10:01:01Z" and firing["startsAt"] == "2025-08-07T10:00:00Z"
    resolved = to_alertmanager(dataclasses.replace(finding("r1"), status="resolved"), EVENT_MS + 1000)
    assert resolved["endsAt"] == "2025-08-07T10:00:01Z"
    text = json.dumps(firing)
    assert "ref:abc" not in text and "placeholder" not in text  # subject refs and details stay on the topic
