"""``dismon policy diff``: what a policy change would do to the findings on real history.

The logs are read and decoded once (in a second process, which also reduces each event under both
policies, when there are two CPUs); every event goes to two detectors, one per policy, in the same
event-time order a replay uses, so each side finds exactly what ``dismon replay`` of that policy finds. The
difference is by ``(alert_id, status)``: an alert id names the rule, the agreement and what was found (a
request id, a window), never the policy file, so the same finding under both policies has the same id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from monitor.core.detector import Detector
from monitor.core.digests import Digest
from monitor.core.findings import SEVERITY_RANK, Finding
from monitor.replay.read_ahead import read_ahead_pairs
from monitor.replay.sources import DeadLetter, ReadOptions, merged_events

Key = tuple[str, str]  # (alert_id, status)


@dataclass(slots=True)
class Change:
    """Findings of one rule and agreement that one side has and the other has not."""

    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    examples: list[str] = field(default_factory=list)  # alert ids, the first few

    def add(self, finding: Finding) -> None:
        self.count += 1
        at = finding.event_time_ms
        self.first_ms = at if self.first_ms is None else min(self.first_ms, at)
        self.last_ms = at if self.last_ms is None else max(self.last_ms, at)
        if len(self.examples) < 3:
            self.examples.append(finding.alert_id)


@dataclass(slots=True)
class PolicyDiff:
    events: int = 0
    old: int = 0  # findings under each policy
    new: int = 0
    added: list[Finding] = field(default_factory=list)  # under the new policy only
    removed: list[Finding] = field(default_factory=list)  # under the old policy only

    def by_rule(self, findings: Iterable[Finding]) -> dict[tuple[str, str, str], Change]:
        """(rule, severity, agreement) -> the change."""
        changes: dict[tuple[str, str, str], Change] = {}
        for finding in findings:
            changes.setdefault((finding.rule, finding.severity, finding.agreement_id), Change()).add(finding)
        return dict(sorted(changes.items()))

    def lost_at_or_above(self, severity: str) -> int:
        return sum(1 for f in self.removed if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[severity])


def run_diff(
    paths: Iterable[str],
    old: Detector,
    new: Detector,
    on_dead_letter: Callable[[DeadLetter], None],
    read: ReadOptions,
    until_ms: int | None = None,
    read_ahead: bool = False,
) -> PolicyDiff:
    """Every event of ``paths`` through both detectors; the findings each has that the other has not. With
    ``read_ahead`` a second process decodes each event once and reduces it under both policies, so that this
    one only joins and judges (files only, not stdin)."""
    by_old: dict[Key, Finding] = {}
    by_new: dict[Key, Finding] = {}
    diff = PolicyDiff()
    stream: Iterable[tuple[int, Digest, Digest]]
    if read_ahead:
        stream = read_ahead_pairs(paths, on_dead_letter, read, old.reducer, new.reducer)
    else:
        stream = (
            (event_ms, old.reducer.reduce(event, event_ms), new.reducer.reduce(event, event_ms))
            for event_ms, _seq, event in merged_events(paths, on_dead_letter, read)
        )
    for event_ms, one, two in stream:
        diff.events += 1
        if found := old.apply(one, event_ms):  # most events find nothing: no call then
            _keep(by_old, found)
        if found := new.apply(two, event_ms):
            _keep(by_new, found)
    if until_ms is not None:
        _keep(by_old, old.advance_to(until_ms))
        _keep(by_new, new.advance_to(until_ms))
    diff.old, diff.new = len(by_old), len(by_new)
    diff.added = [f for key, f in by_new.items() if key not in by_old]
    diff.removed = [f for key, f in by_old.items() if key not in by_new]
    return diff


def _keep(into: dict[Key, Finding], findings: Iterable[Finding]) -> None:
    for finding in findings:
        into.setdefault((finding.alert_id, finding.status), finding)
