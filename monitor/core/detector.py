"""The detection core in one piece: events in, findings out, on event time.

:class:`Detector` is what a replay (and a test) feeds: each event is reduced on its own to a digest
(:mod:`monitor.core.digests`, stateless; a replay may reduce in another process and feed digests with
:meth:`Detector.apply`), joined (:class:`~monitor.core.joiner.Joiner`, stateful), and the window facts the join
gives are counted at once by an inline window stage (:mod:`monitor.core.windows.stage`). The watermark is
the newest event time seen minus the allowed lateness. The live worker combines the same pieces its own
way: the watermark of its partitions, and one window stage for the whole group, fed over Kafka. Both are
thin shells around the same code, so they find exactly the same things.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monitor.core.digests import Digest, Reducer
from monitor.core.events import Event, event_time_ms
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.join import JoinEntry, JoinStore, TimerWheel
from monitor.core.joiner import DEFAULT_MAX_JOIN_ENTRIES, DetectorStats, Joiner, Output
from monitor.core.ledger import AccountingEntry
from monitor.core.observe import Observer
from monitor.core.policy import Policy
from monitor.core.windows.stage import WindowStage

DEFAULT_ALLOWED_LATENESS_MS = 10 * 60_000
_NO_FINDINGS: Sequence[Finding] = ()

__all__ = ["DEFAULT_ALLOWED_LATENESS_MS", "DEFAULT_MAX_JOIN_ENTRIES", "Detector", "count_windows"]


class Detector:
    """Reduces, joins and counts windows, with the watermark following the events."""

    __slots__ = ("_join", "allowed_lateness_ms", "joiner", "reducer", "windows")

    def __init__(
        self,
        policy: Policy,
        hasher: SubjectHasher,
        allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
        store: JoinStore | None = None,
        timers: TimerWheel | None = None,
        observer: Observer | None = None,
        max_entries: int | None = None,
        accounting: Callable[[AccountingEntry], None] | None = None,
    ) -> None:
        """``accounting``: gets the accounting entry of every disclosure judged (monitor/core/ledger.py)."""
        self.allowed_lateness_ms = allowed_lateness_ms
        self.reducer = Reducer(policy, hasher)
        self.windows = WindowStage(policy)
        # Only the facts some windowed rule of this policy counts (without a ratio rule, none per response).
        self.joiner = Joiner(
            policy, store, timers, observer, max_entries, self.windows.counted_types(), accounting=accounting
        )
        self._join = self.joiner.apply

    @property
    def policy(self) -> Policy:
        return self.joiner.policy

    @property
    def store(self) -> JoinStore:
        return self.joiner.store

    @property
    def timers(self) -> TimerWheel:
        return self.joiner.timers

    @property
    def stats(self) -> DetectorStats:
        return self.joiner.stats

    @property
    def watermark_ms(self) -> int | None:
        return self.joiner.watermark_ms

    @property
    def max_event_ms(self) -> int | None:
        return self.joiner.max_event_ms

    def set_policy(self, policy: Policy) -> None:
        """Judge from now on by ``policy`` (a reload); join state, timers and window counts carry over."""
        self.reducer.set_policy(policy)
        self.windows.set_policy(policy)
        self.joiner.set_policy(policy, self.windows.counted_types())

    def process(self, event: Event, event_ms: int | None = None) -> Sequence[Finding]:
        """Feed one event; returns the findings it (and the watermark it moved) produced."""
        if event_ms is None:
            event_ms = event_time_ms(event)
        return self.apply(self.reducer.reduce(event, event_ms), event_ms)

    def apply(self, digest: Digest, event_ms: int) -> Sequence[Finding]:
        """Feed one event already reduced (by this detector's policy and key, perhaps in another process)."""
        out = self._join(digest, event_ms, event_ms - self.allowed_lateness_ms)
        if out:
            return self._counted(out)
        due = self.windows.due_ms
        if due is not None and due <= self.joiner.watermark_ms:  # type: ignore[operator]  # just set: never None
            return self._counted(out)
        return _NO_FINDINGS  # most events give nothing

    def advance_to(self, watermark_ms: int) -> Sequence[Finding]:
        """Move the watermark forward explicitly (``--until``); never backwards."""
        return self._counted(self.joiner.advance_to(watermark_ms))

    def _counted(self, out: Sequence[Output]) -> list[Finding]:
        joiner = self.joiner
        return count_windows(self.windows, out, joiner.watermark_ms, joiner.max_event_ms, joiner.stats)

    def restore(self, request_id: str, entry: JoinEntry) -> None:
        """Take over an entry recovered from a durable store: re-arm its timers."""
        self.joiner.restore(request_id, entry)

    def pending(self) -> dict[str, int]:
        """Join state sizes, for metrics and the replay summary."""
        return self.joiner.pending()


def count_windows(
    windows: WindowStage,
    out: Sequence[Output],
    watermark_ms: int | None,
    max_event_ms: int | None,
    stats: DetectorStats,
) -> list[Finding]:
    """A join's output with an inline window stage: its findings, with its window facts counted by
    ``windows`` in the order they arose, then what the windows ``watermark_ms`` has passed give (counted in
    ``stats``)."""
    windows.max_event_ms = max_event_ms
    findings: list[Finding] = []
    apply = windows.apply
    for item in out:
        if type(item) is Finding:
            findings.append(item)
        else:
            windowed = apply(item)  # type: ignore[arg-type]  # not a Finding: a window fact
            if windowed:
                findings += windowed
                _count(stats, windowed)
    if windows.due_ms is not None and watermark_ms is not None and windows.due_ms <= watermark_ms:
        windowed = list(windows.advance_to(watermark_ms))
        findings += windowed
        _count(stats, windowed)
    return findings


def _count(stats: DetectorStats, windowed: Sequence[Finding]) -> None:
    for finding in windowed:
        if finding.status == "firing":
            stats.findings[finding.rule] += 1
