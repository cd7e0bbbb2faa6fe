"""``dismon replay``: historical logs through the same :class:`~monitor.core.detector.Detector` as the live worker.

This module only wires inputs to the detector and findings to sinks, and
keeps the tallies for the summary. It never advances time past the last
event unless told to (``until_ms``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from monitor.core.detector import Detector
from monitor.core.digests import Digest
from monitor.core.findings import Finding
from monitor.replay.read_ahead import Split, read_ahead_digests
from monitor.replay.sources import ByteCounter, DeadLetter, ReadOptions, merged_events

FindingSink = Callable[[Finding], None]
DeadLetterSink = Callable[[DeadLetter], None]
ProgressHook = Callable[[int], None]  # called with the number of events read so far


@dataclass(slots=True)
class ReplaySummary:
    events: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    late_events: int = 0
    refused: int = 0  # events not joined because the join state was at its cap
    alerts: Counter[str] = field(default_factory=Counter)
    alerts_by_severity: Counter[str] = field(default_factory=Counter)
    first_detection: dict[str, Finding] = field(default_factory=dict)  # rule -> earliest-detected finding
    first_event_ms: int | None = None
    last_event_ms: int | None = None
    seconds: float = 0.0
    state_at_end: dict[str, int] = field(default_factory=dict)  # join state left when the input ended

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    resolved: Counter[str] = field(default_factory=Counter)

    def record(self, finding: Finding) -> None:
        if finding.status == "resolved":
            self.resolved[finding.rule] += 1
            return
        self.alerts[finding.rule] += 1
        self.alerts_by_severity[finding.severity] += 1
        self.first_detection.setdefault(finding.rule, finding)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How a replay runs: how it reads, where its clock ends, and whether a second process reads ahead."""

    read: ReadOptions | None = None  # None: the detector's allowed lateness as the disorder bound, defaults else
    until_ms: int | None = None  # advance the clock to this after the last event, so timers due by then fire
    # A second process reads, validates and orders the input (files only, not stdin), sharing the reducing
    # as this says (monitor.replay.read_ahead; "balanced" but for tests and benchmarks).
    read_ahead: Split | None = None


def run_replay(
    paths: Iterable[str],
    detector: Detector,
    on_finding: FindingSink,
    on_dead_letter: DeadLetterSink,
    options: ReplayOptions = ReplayOptions(),
    progress: ProgressHook | None = None,
    counter: ByteCounter | None = None,
) -> ReplaySummary:
    """Feed every event of ``paths`` to ``detector`` in event-time order; returns the tallies. Read ahead
    or not, the same digests and dead letters in the same order."""
    summary = ReplaySummary()
    started = time.perf_counter()

    def dead_letter(letter: DeadLetter) -> None:
        summary.invalid[letter.reason] += 1
        on_dead_letter(letter)

    def emit(findings: Iterable[Finding]) -> None:
        for finding in findings:
            summary.record(finding)
            on_finding(finding)

    read = options.read or ReadOptions(detector.allowed_lateness_ms)
    first_ms: int | None = None
    # Events are reduced as they are read (by this detector's reducer, or one like it in the reading
    # process), then ordered, then joined: the same digests in the same order as the detector would make.
    stream: Iterator[tuple[int, int, Digest]]
    if options.read_ahead is not None:
        stream = read_ahead_digests(paths, dead_letter, read, detector.reducer, counter, options.read_ahead)
    else:
        stream = merged_events(paths, dead_letter, read, counter, reduce=detector.reducer.reduce)
    apply = detector.apply
    for count, (event_ms, _seq, digest) in enumerate(stream, 1):
        if first_ms is None:
            first_ms = event_ms
        findings = apply(digest, event_ms)
        if findings:
            emit(findings)
        if progress is not None and not count % 8192:
            progress(count)
    if options.until_ms is not None:
        emit(detector.advance_to(options.until_ms))
    summary.events.update(detector.stats.events)
    summary.late_events = detector.stats.late_events
    summary.refused = detector.stats.refused
    summary.first_event_ms = first_ms
    summary.last_event_ms = detector.max_event_ms
    summary.state_at_end = detector.pending()
    summary.seconds = time.perf_counter() - started
    return summary
