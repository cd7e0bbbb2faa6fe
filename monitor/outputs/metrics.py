"""Prometheus metrics of a running monitor (worker or replay), on an injected registry.

The names and labels here are a contract: the alert rules in
``deploy/prometheus/`` and the dashboards in ``dashboards/`` query them, and
``docs/metrics.md`` lists them. Label values are bounded: event kinds, rule
ids, severities, field names, agreement ids of the policy and the canary's
``dismon-canary`` (``unknown`` for any other), requester agencies the policy names (``other`` for any other), units
up to :data:`MAX_UNITS` distinct values (then ``other``), and dead-letter
reasons with list indices folded. Never a request id, a name or any other
personal value from an event.

Counters and histograms are updated as events flow (the core calls
:class:`Metrics` through :class:`~monitor.core.observe.Observer`); join-state
gauges are computed at scrape time from the detector's state.
"""

from __future__ import annotations

import bisect
import collections
import functools
import re
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.core.canary import CANARY_AGENCY, CANARY_AGREEMENT
from monitor.core.findings import Finding
from monitor.core.policy import Policy

_INDEX_RE = re.compile(r"\[\d+\]")
MAX_UNITS = 64
OTHER = "other"
UNKNOWN = "unknown"
#: Request -> first answer, in event time: seconds to a month.
JOIN_LATENCY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
#: Offending event -> alert emitted, wall clock. Timed rules (SLA, disposal) include their deadline.
DETECTION_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


def reason_label(reason: str) -> str:
    """A dead-letter reason with list indices folded, so the label set stays bounded."""
    return _INDEX_RE.sub("[]", reason)


class BoundedLabel:
    """Maps raw values onto at most ``limit`` label values; later newcomers become ``other``."""

    def __init__(self, limit: int, allowed: Iterable[str] | None = None) -> None:
        self._allowed = frozenset(allowed) if allowed is not None else None
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return UNKNOWN
        if self._allowed is not None:
            return value if value in self._allowed else OTHER
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER


class Metrics:
    """Counters and histograms fed by the core (an :class:`~monitor.core.observe.Observer`) and by the shells."""

    def __init__(self, registry: CollectorRegistry, policy: Policy) -> None:
        self.set_policy(policy)
        self.unit = BoundedLabel(MAX_UNITS)
        self.events = Counter(
            "dismon_events", "Valid events processed, by type and agreement", ["type", "agreement"], registry=registry
        )
        self.invalid = Counter(
            "dismon_invalid_events", "Invalid events dead-lettered, by reason", ["reason"], registry=registry
        )
        self.late_events = Counter(
            "dismon_late_events", "Events older than the watermark on arrival (still processed)", registry=registry
        )
        self.refused_events = Counter(
            "dismon_join_refused",
            "Events of new request ids not joined because the join "
            "state was at its cap (--max-join-entries); joined rules missed them",
            registry=registry,
        )
        self.disclosures = Counter(
            "dismon_disclosures",
            "Fields disclosed in responses, by agreement, requester agency and field",
            ["agreement", "requester_agency", "field"],
            registry=registry,
        )
        self.disclosing_responses = Counter(
            "dismon_disclosing_responses",
            "Responses that disclosed anything, by agreement and requester agency",
            ["agreement", "requester_agency"],
            registry=registry,
        )
        self.findings = Counter(
            "dismon_findings",
            "Findings emitted (status firing or resolved), by the agreement version that judged them",
            ["rule", "severity", "status", "agreement", "requester_unit", "policy_version"],
            registry=registry,
        )
        self.shadow_findings = Counter(
            "dismon_shadow_findings",
            "Findings of the candidate policy (--shadow-policy), sent to <prefix>.shadow-alerts only",
            ["rule", "severity", "status", "agreement", "policy_version"],
            registry=registry,
        )
        self.join_latency = Histogram(
            "dismon_join_latency_seconds",
            "Request to its first response, in event time",
            ["agreement"],
            buckets=JOIN_LATENCY_BUCKETS,
            registry=registry,
        )
        self.detection_lag = Histogram(
            "dismon_detection_lag_seconds",
            "Offending event's time to the alert being emitted, wall clock",
            ["severity"],
            buckets=DETECTION_LAG_BUCKETS,
            registry=registry,
        )
        self._registry = registry

    def set_policy(self, policy: Policy) -> None:
        """Label values follow the policy in force (agreements and requesters are bounded by it)."""
        # Each labelled child once per label values: ``labels()`` costs more than the count itself, per event.
        self._event_children: dict[tuple[str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._agreements = frozenset((*policy.agreements, CANARY_AGREEMENT))
        self._versions = frozenset({policy.version} | {a.version for a in policy.all_versions() if a.version})
        self.agency = BoundedLabel(
            MAX_UNITS, {a for ag in policy.agreements.values() for a in ag.requesters} | {CANARY_AGENCY}
        )

    def agreement(self, agreement_id: str) -> str:
        return agreement_id if agreement_id in self._agreements else UNKNOWN

    def version(self, finding: Finding) -> str:
        """The finding's ``details.policy_version``: one of the policy's version labels (bounded by the
        file), ``other`` for one it no longer holds, empty when the rule names none."""
        version = finding.details.get("policy_version") if finding.details else None
        if not isinstance(version, str):
            return ""
        return version if version in self._versions else OTHER

    # -- Observer ------------------------------------------------------------------------------

    def event(self, kind: str, agreement_id: str, count: int = 1) -> None:
        labels = (kind, agreement_id if agreement_id in self._agreements else UNKNOWN)
        child = self._event_children.get(labels)
        if child is None:
            child = self._event_children[labels] = self.events.labels(*labels)
        child.inc(count)

    def disclosure(
        self, agreement_id: str, requester_agency: str | None, fields: tuple[str, ...], at_ms: int, improper: bool
    ) -> None:
        agreement, agency = self.agreement(agreement_id), self.agency(requester_agency)
        self.disclosing_responses.labels(agreement, agency).inc()
        for name in fields:
            self.disclosures.labels(agreement, agency, name).inc()

    def late(self) -> None:
        self.late_events.inc()

    def refused(self) -> None:
        self.refused_events.inc()

    def joined(self, agreement_id: str, latency_ms: int) -> None:
        self._latency_child(agreement_id).observe(max(latency_ms, 0) / 1000)

    def joined_all(self, agreement_id: str, latencies_ms: Iterable[int]) -> None:
        """:meth:`joined` for each of ``latencies_ms`` (a batch's, from :class:`BatchedObserver`)."""
        observe_all(self._latency_child(agreement_id), [max(latency_ms, 0) / 1000 for latency_ms in latencies_ms])

    def _latency_child(self, agreement_id: str) -> Histogram:
        agreement = agreement_id if agreement_id in self._agreements else UNKNOWN
        child = self._latency_children.get(agreement)
        if child is None:
            child = self._latency_children[agreement] = self.join_latency.labels(agreement)
        return child

    # -- the shells ----------------------------------------------------------------------------

    def dead_letter(self, reason: str) -> None:
        self.invalid.labels(reason_label(reason)).inc()

    def finding(self, finding: Finding, emitted_ms: int | None = None) -> None:
        unit = self.unit(finding.requester.get("unit") if finding.requester else None)
        self.findings.labels(
            finding.rule,
            finding.severity,
            finding.status,
            self.agreement(finding.agreement_id),
            unit,
            self.version(finding),
        ).inc()
        if emitted_ms is not None and finding.status == "firing":
            self.detection_lag.labels(finding.severity).observe(max(emitted_ms - finding.event_time_ms, 0) / 1000)

    def shadow_finding(self, finding: Finding) -> None:
        self.shadow_findings.labels(
            finding.rule, finding.severity, finding.status, self.agreement(finding.agreement_id), self.version(finding)
        ).inc()

    def track_state(
        self,
        pending: Callable[[], Mapping[str, int]],
        watermark_ms: Callable[[], int | None],
        consumer_lag: Callable[[], Mapping[str, int]] | None = None,
        cache_s: float = 5.0,
        capacity: int | None = None,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        """Export join-state sizes, watermark lag (against ``wall_s``, the wall clock in seconds) and, live
        only, consumer lag, computed at scrape time."""
        self._registry.register(_StateCollector(pending, watermark_ms, consumer_lag, cache_s, capacity, wall_s))


def observe_all(child: Histogram, amounts: list[float]) -> None:
    """``child.observe(amount)`` for each of ``amounts``, with one update of the sum and one of each bucket hit.
    prometheus_client has no call for many observations; this counts them into the child's ``_sum`` and
    ``_buckets`` as its ``observe`` does (tests/outputs/test_metrics.py holds the two equal, so an upgrade
    that changes them fails there), and observes one by one where the child has no such fields."""
    bounds, buckets, total = (getattr(child, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            child.observe(amount)
        return
    total.inc(sum(amounts))
    for index, count in collections.Counter(map(functools.partial(bisect.bisect_left, bounds), amounts)).items():
        buckets[index].inc(count)


class BatchedObserver:
    """The detection core's observer in the worker: events and join latencies counted in plain dicts during a
    batch and added to ``metrics`` at :meth:`flush`, once a batch, instead of a Prometheus child's lock and
    update for each event. The rarer calls go straight through."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._events: dict[tuple[str, str], int] = {}  # (kind, agreement id) -> events
        self._latencies: dict[str, list[int]] = {}  # agreement id -> join latencies (ms)

    def event(self, kind: str, agreement_id: str) -> None:
        key = (kind, agreement_id)
        self._events[key] = self._events.get(key, 0) + 1

    def joined(self, agreement_id: str, latency_ms: int) -> None:
        latencies = self._latencies.get(agreement_id)
        if latencies is None:
            latencies = self._latencies[agreement_id] = []
        latencies.append(latency_ms)

    def disclosure(
        self, agreement_id: str, requester_agency: str | None, fields: tuple[str, ...], at_ms: int, improper: bool
    ) -> None:
        self.metrics.disclosure(agreement_id, requester_agency, fields, at_ms, improper)

    def late(self) -> None:
        self.metrics.late()

    def refused(self) -> None:
        self.metrics.refused()

    def flush(self) -> None:
        """What was counted since the last flush, to the metrics."""
        if self._events:
            for (kind, agreement_id), count in self._events.items():
                self.metrics.event(kind, agreement_id, count)
            self._events = {}
        if self._latencies:
            for agreement_id, latencies in self._latencies.items():
                self.metrics.joined_all(agreement_id, latencies)
            self._latencies = {}


class _StateCollector(Collector):
    """Scrape-time gauges; the join-state walk is cached for ``cache_s`` so frequent scrapes stay cheap."""

    def __init__(
        self,
        pending: Callable[[], Mapping[str, int]],
        watermark_ms: Callable[[], int | None],
        consumer_lag: Callable[[], Mapping[str, int]] | None,
        cache_s: float,
        capacity: int | None,
        wall_s: Callable[[], float],
    ) -> None:
        self._pending, self._watermark_ms, self._consumer_lag = pending, watermark_ms, consumer_lag
        self._wall_s = wall_s
        self._capacity = capacity
        self._cache_s = cache_s
        self._cached: tuple[float, Mapping[str, int]] | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # unchecked: values come from callbacks at scrape time

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self._cache_s:
            walked = _walk(self._pending)
            if walked is not None:
                self._cached = (now, walked)
        state: Mapping[str, int] = self._cached[1] if self._cached is not None else {}
        yield GaugeMetricFamily("dismon_join_entries", "Request ids held in join state", state.get("entries", 0))
        if self._capacity is not None:
            yield GaugeMetricFamily(
                "dismon_join_capacity", "The cap on request ids held (--max-join-entries)", self._capacity
            )
        yield GaugeMetricFamily(
            "dismon_join_pending_requests", "Requests held without any answer yet", state.get("unanswered_requests", 0)
        )
        yield GaugeMetricFamily(
            "dismon_join_pending_orphans",
            "Disclosures waiting (within the grace) for their request",
            state.get("pending_orphans", 0),
        )
        yield GaugeMetricFamily(
            "dismon_open_improper_disclosures",
            "Improper disclosures whose disposal has not been seen and whose deadline has not passed",
            state.get("open_improper", 0),
        )
        watermark = self._watermark_ms()
        if watermark is not None:
            yield GaugeMetricFamily(
                "dismon_watermark_timestamp_seconds", "Event-time watermark (epoch seconds)", watermark / 1000
            )
            yield GaugeMetricFamily(
                "dismon_watermark_lag_seconds",
                "Wall clock minus the event-time watermark",
                self._wall_s() - watermark / 1000,
            )
        if self._consumer_lag is not None:
            lag = GaugeMetricFamily(
                "dismon_consumer_lag", "Messages behind the end of each input topic", labels=["topic"]
            )
            for topic, value in sorted(self._consumer_lag().items()):
                lag.add_metric([topic], value)
            yield lag


def _walk(pending: Callable[[], Mapping[str, int]]) -> dict[str, int] | None:
    """Run ``pending``; a replay serves metrics from a thread while its main thread changes the state, and a
    walk that met a change is simply retried (or skipped: the last figures stay)."""
    for _attempt in range(3):
        try:
            return dict(pending())
        except RuntimeError:  # dictionary changed size during iteration
            continue
    return None


class CanaryMetrics:
    """``dismon canary``'s metrics: whether detection works end to end (the DismonDetectionBlind alert)."""

    def __init__(self, registry: CollectorRegistry, interval_s: float, started_s: float) -> None:
        self.interval = Gauge(
            "dismon_canary_interval_seconds", "Seconds between the canary's probes", registry=registry
        )
        self.interval.set(interval_s)
        self.last_success = Gauge(
            "dismon_canary_last_success_timestamp_seconds",
            "When a probe's findings last came back on the alerts topic (the canary's start until the first)",
            registry=registry,
        )
        self.last_success.set(started_s)
        self.round_trip = Histogram(
            "dismon_canary_round_trip_seconds",
            "From a probe's publication to its last finding on the alerts topic",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.probes = Counter(
            "dismon_canary_probes", "Probes by outcome: sent, returned, lost", ["outcome"], registry=registry
        )
        for outcome in ("sent", "returned", "lost"):
            self.probes.labels(outcome)


class LedgerMetrics:
    """The accounting of disclosures: entries appended and the last signed checkpoint (DismonLedgerStalled)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Counter(
            "dismon_ledger_entries", "Accounting entries appended to the ledger (new ones only)", registry=registry
        )
        self.last_checkpoint = Gauge(
            "dismon_ledger_last_checkpoint_timestamp_seconds",
            "When the ledger writer last signed a checkpoint (0 until the first)",
            registry=registry,
        )
        self.size = Gauge("dismon_ledger_checkpoint_size", "Entries covered by the last checkpoint", registry=registry)

    def appended(self, count: int) -> None:
        self.entries.inc(count)

    def checkpointed(self, size: int, at_s: float) -> None:
        self.size.set(size)
        self.last_checkpoint.set(at_s)
