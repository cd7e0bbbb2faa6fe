"""Findings pushed to Alertmanager's v2 API, without ever holding up the stream.

:meth:`AlertmanagerSink.submit` only queues (a bounded queue: when it is full
the oldest finding is dropped and counted; the alerts topic still has every
finding). :meth:`AlertmanagerSink.run` posts batches and retries failed pushes
with exponential backoff; a push refused as malformed (HTTP 400) is logged and
dropped rather than retried forever.

An Alertmanager alert carries bounded, non-personal labels only: rule,
severity, agreement, requester agency and unit, and the ``alert_id`` (so one
finding is one alert, and a re-sent finding updates it instead of adding one).
A firing finding stays active for ``hold_ms``; a resolved one ends now.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.core.findings import Finding
from monitor.core.timeutil import format_ms

log = logging.getLogger("dismon.alertmanager")

ALERTNAME = "DisclosureFinding"
DEFAULT_HOLD_MS = 3_600_000
DEFAULT_RUNBOOK_BASE = "docs/runbooks/"


def to_alertmanager(
    finding: Finding, now_ms: int, hold_ms: int = DEFAULT_HOLD_MS, runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> dict[str, Any]:
    """One postable alert of Alertmanager's v2 API for a finding."""
    requester = finding.requester or {}
    labels = {
        "alertname": ALERTNAME,
        "rule": finding.rule,
        "severity": finding.severity,
        "agreement": finding.agreement_id,
        "requester_agency": requester.get("agency") or "",
        "requester_unit": requester.get("unit") or "",
        "alert_id": finding.alert_id,
    }
    ends_ms = now_ms if finding.status == "resolved" else now_ms + hold_ms
    return {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {
            "summary": finding.summary,
            "runbook": f"{runbook_base}{finding.rule}.md",
            "event_time": format_ms(finding.event_time_ms),
        },
        "startsAt": format_ms(min(finding.event_time_ms, now_ms)),
        "endsAt": format_ms(ends_ms),
    }


class AlertmanagerSink:
    def __init__(
        self,
        url: str,
        registry: CollectorRegistry,
        *,
        hold_ms: int = DEFAULT_HOLD_MS,
        runbook_base: str = DEFAULT_RUNBOOK_BASE,
        max_queue: int = 10_000,
        batch: int = 500,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        timeout_s: float = 10.0,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self._hold_ms, self._runbook_base = hold_ms, runbook_base
        self._queue: deque[dict[str, Any]] = deque(maxlen=max_queue)
        self._batch, self._backoff_s, self._timeout_s = batch, backoff_s, timeout_s
        self._wakeup = asyncio.Event()
        self.pushed = Counter(
            "dismon_alertmanager_alerts_pushed", "Findings accepted by Alertmanager", registry=registry
        )
        self.failures = Counter(
            "dismon_alertmanager_push_failures", "Failed pushes to Alertmanager (retried)", registry=registry
        )
        self.dropped = Counter(
            "dismon_alertmanager_alerts_dropped",
            "Findings not pushed (queue full or refused as malformed); the alerts topic still has them",
            registry=registry,
        )
        Gauge(
            "dismon_alertmanager_queue", "Findings waiting to be pushed to Alertmanager", registry=registry
        ).set_function(lambda: len(self._queue))

    def submit(self, finding: Finding, now_ms: int) -> None:
        """Queue a finding; never blocks. The oldest is dropped (and counted) when the queue is full."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped.inc()
        self._queue.append(to_alertmanager(finding, now_ms, self._hold_ms, self._runbook_base))
        self._wakeup.set()

    async def run(self) -> None:
        """Push queued findings until cancelled, retrying with exponential backoff."""
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            delay = self._backoff_s[0]
            while True:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                batch = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
                outcome = await self._post(session, batch)
                if outcome == "retry":
                    self.failures.inc()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._backoff_s[1])
                    continue
                delay = self._backoff_s[0]
                sent = {id(alert) for alert in batch}  # a full queue may have dropped some of them meanwhile
                while self._queue and id(self._queue[0]) in sent:
                    self._queue.popleft()
                (self.pushed if outcome == "ok" else self.dropped).inc(len(batch))

    async def _post(self, session: aiohttp.ClientSession, batch: list[dict[str, Any]]) -> str:
        try:
            async with session.post(self.endpoint, json=batch) as answer:
                if answer.status < 300:
                    return "ok"
                text = (await answer.text())[:200]
                if answer.status == 400:
                    log.error("Alertmanager refused %d alerts as malformed (dropped): %s", len(batch), text)
                    return "refused"
                log.warning("Alertmanager push failed with HTTP %d (will retry): %s", answer.status, text)
                return "retry"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("Alertmanager at %s unreachable (will retry): %s", self.endpoint, exc or type(exc).__name__)
            return "retry"
