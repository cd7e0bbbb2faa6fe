"""Prometheus metrics of a running monitor, on an injected registry.

Label values are bounded: event types, rule ids, severities, and dead-letter
reasons with list indices folded (``wrong_type:legal_basis.tax_periods[]``).
Never a request id, a name or any other value from an event.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.findings import Finding

_INDEX_RE = re.compile(r"\[\d+\]")


def reason_label(reason: str) -> str:
    """A dead-letter reason with list indices folded, so the label set stays bounded."""
    return _INDEX_RE.sub("[]", reason)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("dismon_events", "Valid events processed", ["type"], registry=registry)
        self.invalid = Counter("dismon_invalid_events", "Invalid events dead-lettered", ["reason"], registry=registry)
        self.late = Counter("dismon_late_events", "Events older than the watermark on arrival", registry=registry)
        self.findings = Counter(
            "dismon_findings", "Findings emitted", ["rule", "severity", "status"], registry=registry
        )
        self.watermark = Gauge("dismon_watermark_timestamp_seconds", "Event-time watermark", registry=registry)
        self.join_entries = Gauge("dismon_join_entries", "Request ids held in join state", registry=registry)

    def finding(self, finding: Finding) -> None:
        self.findings.labels(finding.rule, finding.severity, finding.status).inc()

    def track_join_entries(self, size: Callable[[], int]) -> None:
        self.join_entries.set_function(lambda: float(size()))
