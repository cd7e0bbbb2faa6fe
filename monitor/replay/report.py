"""Replay summaries (for people on stderr, as JSON for ``dismon report``) and the comparison of findings with a
simulator's ground truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from monitor.core.findings import Finding
from monitor.core.observe import Observer
from monitor.core.timeutil import MS_PER_DAY, format_ms, parse_time_ms
from monitor.errors import InputError
from monitor.replay.run import ReplaySummary

Key = tuple[str, str]  # (rule, request_id)


@dataclass(slots=True)
class Truth:
    scenario: str
    until_ms: int
    expected: dict[Key, int]  # -> event time ms
    public_record: Mapping[str, Any] | None = None


def load_truth(path: str) -> Truth:
    try:
        with open(path, "rb") as handle:
            data = orjson.loads(handle.read())
        expected = {(rule, request_id): at for rule, request_id, at in data["expected"]}
        return Truth(data["scenario"], parse_time_ms(data["until"]), expected, data.get("public_record"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read ground truth {path}: {exc}") from exc


@dataclass(slots=True)
class Comparison:
    """Findings against ground truth, keyed by (rule, request_id)."""

    found: set[Key] = field(default_factory=set)
    first_detection_ms: dict[str, int] = field(default_factory=dict)  # rule -> stream time of first finding

    def add(self, finding: Finding) -> None:
        if finding.status == "resolved":
            return
        self.found.add(finding_key(finding))
        self.first_detection_ms.setdefault(finding.rule, finding.detected_stream_ms)

    def missed(self, truth: Truth) -> set[Key]:
        return set(truth.expected) - self.found

    def unexpected(self, truth: Truth) -> set[Key]:
        return self.found - set(truth.expected)


def _n(value: int) -> str:
    return f"{value:,}"


def summary_lines(summary: ReplaySummary) -> list[str]:
    rate = summary.total_events / summary.seconds if summary.seconds > 0 else 0.0
    by_type = ", ".join(f"{kind} {_n(count)}" for kind, count in sorted(summary.events.items()))
    lines = [
        f"replayed {_n(summary.total_events)} events ({by_type or 'none'}) in {summary.seconds:.1f} s"
        f" ({_n(int(rate))} events/s)",
    ]
    if summary.first_event_ms is not None and summary.last_event_ms is not None:
        lines.append(f"event time: {format_ms(summary.first_event_ms)} .. {format_ms(summary.last_event_ms)}")
    invalid = sum(summary.invalid.values())
    detail = ", ".join(f"{reason} {_n(c)}" for reason, c in summary.invalid.most_common())
    lines.append(f"invalid: {_n(invalid)}{f' ({detail})' if detail else ''}; late: {_n(summary.late_events)}")
    if summary.refused:
        lines.append(
            f"JOIN STATE FULL: {_n(summary.refused)} events of new request ids were not joined (raise "
            "--max-join-entries); joined rules could not judge them"
        )
    state = summary.state_at_end
    if state:
        lines.append(
            f"join state at the end: {_n(state['entries'])} request ids held, {_n(state['unanswered_requests'])}"
            f" requests unanswered, {_n(state['pending_orphans'])} disclosures waiting for their request"
        )
    if not summary.alerts:
        lines.append("alerts: none")
        return lines
    lines.append(f"alerts: {_n(sum(summary.alerts.values()))}")
    width = max(len(rule) for rule in summary.alerts)
    for rule, count in sorted(summary.alerts.items(), key=lambda item: -item[1]):
        first = summary.first_detection[rule]
        lines.append(
            f"  {rule:<{width}}  {first.severity:<8} {_n(count):>9}   first: event {format_ms(first.event_time_ms)},"
            f" detected at stream time {format_ms(first.detected_stream_ms)}"
        )
    return lines


def truth_lines(comparison: Comparison, truth: Truth) -> list[str]:
    missed, unexpected = comparison.missed(truth), comparison.unexpected(truth)
    lines = [
        f"ground truth ({truth.scenario}): expected {_n(len(truth.expected))}, found {_n(len(comparison.found))},"
        f" missed {_n(len(missed))}, unexpected {_n(len(unexpected))}"
    ]
    for label, keys in (("missed", missed), ("unexpected", unexpected)):
        for rule, request_id in sorted(keys)[:5]:
            lines.append(f"  {label}: {rule} {request_id}")
    improper = sorted(at for (rule, _), at in truth.expected.items() if rule == "incomplete_request_disclosure")
    first = comparison.first_detection_ms.get("incomplete_request_disclosure")
    if improper and first is not None:
        out_by_then = sum(1 for at in improper if at <= first)
        lines.append(
            f"first improper disclosure {format_ms(improper[0])}; first alert at stream time {format_ms(first)}"
            f" ({(first - improper[0]) / 1000:.0f} s later), when {_n(out_by_then)} of {_n(len(improper))}"
            " improper records had gone out"
        )
        rule, earliest = min(comparison.first_detection_ms.items(), key=lambda item: item[1])
        if earliest < first:
            lines.append(
                f"first alert of all: {rule} at stream time {format_ms(earliest)},"
                f" {(improper[0] - earliest) / 86_400_000:.0f} days before the first improper disclosure"
            )
        record = truth.public_record
        if record:
            reported = dt.date.fromisoformat(record["declared_in_court"])
            days = (reported - dt.date.fromisoformat(record["disclosed_on"])).days
            lines.append(
                f"in reality: {_n(record['violations_per_court'])} violations went out on {record['disclosed_on']},"
                f" were reported to the recipient in {record['reported_to_recipient']} and declared in court on"
                f" {record['declared_in_court']}: {days} days later"
            )
    return lines


def count_at_or_above(alerts: Mapping[str, int], minimum: int, ranks: Mapping[str, int]) -> int:
    return sum(count for severity, count in alerts.items() if ranks.get(severity, 0) >= minimum)


def finding_key(finding: Finding) -> Key:
    """(rule, request id) for per-request findings; (rule, what it is about) for windowed ones."""
    return finding.rule, finding.request_id or str(finding.details.get("key", ""))


class DisclosureTally:
    """An observer that counts disclosures by day of their response (all, and improper), for the summary's
    timeline; it passes everything on to ``inner`` (the replay's metrics), if any."""

    def __init__(self, inner: Observer | None = None) -> None:
        self.inner = inner
        self.by_day: dict[int, list[int]] = {}  # day start (ms) -> [disclosures, improper]

    def event(self, kind: str, agreement_id: str) -> None:
        if self.inner is not None:
            self.inner.event(kind, agreement_id)

    def disclosure(
        self, agreement_id: str, requester_agency: str | None, fields: tuple[str, ...], at_ms: int, improper: bool
    ) -> None:
        day = self.by_day.setdefault(at_ms - at_ms % MS_PER_DAY, [0, 0])
        day[0] += 1
        day[1] += improper
        if self.inner is not None:
            self.inner.disclosure(agreement_id, requester_agency, fields, at_ms, improper)

    def late(self) -> None:
        if self.inner is not None:
            self.inner.late()

    def refused(self) -> None:
        if self.inner is not None:
            self.inner.refused()

    def joined(self, agreement_id: str, latency_ms: int) -> None:
        if self.inner is not None:
            self.inner.joined(agreement_id, latency_ms)


def summary_document(summary: ReplaySummary, tally: DisclosureTally, files: list[str], policy: str) -> bytes:
    """The replay's summary as JSON (``--summary-out``), for ``dismon report``: counts only, no personal data."""
    when = {"first_event": summary.first_event_ms, "last_event": summary.last_event_ms}
    return orjson.dumps(
        {
            "files": files,
            "policy": policy,
            "events": dict(summary.events),
            "invalid": dict(summary.invalid),
            "late_events": summary.late_events,
            "refused": summary.refused,
            **{key: None if ms is None else format_ms(ms) for key, ms in when.items()},
            "alerts": dict(summary.alerts),
            "alerts_by_severity": dict(summary.alerts_by_severity),
            "resolved": dict(summary.resolved),
            "state_at_end": summary.state_at_end,
            "disclosures_by_day": [
                [format_ms(day)[:10], total, improper] for day, (total, improper) in sorted(tally.by_day.items())
            ],
            "seconds": round(summary.seconds, 3),
        },
        option=orjson.OPT_INDENT_2,
    )
