"""A candidate policy judging the live stream beside the policy in force (``dismon worker --shadow-policy``).

The shadow sees every valid event the worker handles, in the same order and on the same per-partition
watermarks, and judges it with the core's own pieces: a reducer, a join per input partition and a window
stage. Its findings go to ``<prefix>.shadow-alerts`` and to ``dismon_shadow_findings_total``; never to the
alerts topic, never to Alertmanager, so a candidate can run for days without paging anyone. Comparing the
two topics (or the two metrics) shows what promoting it would change.

What a shadow does not promise, so that it costs the live path little:
- Its join state lives in memory. When the worker takes partitions (at start, after a rebalance) the
  shadow starts from a copy of the live join state recovered for them, so a request held then is still
  joined; its request checks are then the ones the policy in force made.
- Its window stage counts this worker's partitions only. With one worker it counts the whole stream, as
  the live stage does; with several, each worker's shadow judges its share.
- After a crash, events handled again may send a shadow finding twice, with the same ``alert_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from monitor.core.detector import count_windows
from monitor.core.digests import Reducer
from monitor.core.events import Event
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.joiner import DetectorStats, Joiner, Output
from monitor.core.policy import Policy
from monitor.core.windows.stage import WindowStage
from monitor.live import entries
from monitor.live.topic_writer import TopicWriter


class Shadow:
    """The candidate policy's reducer, joins (one per input partition) and window stage."""

    def __init__(
        self,
        policy: Policy,
        hasher: SubjectHasher,
        writer: TopicWriter,
        encode: Callable[[Finding], bytes],
        max_entries: int | None = None,
    ) -> None:
        self.policy = policy
        self.reducer = Reducer(policy, hasher)
        self.windows = WindowStage(policy)
        self.joiners: dict[int, Joiner] = {}
        self.stats = DetectorStats()
        self._writer = writer
        self._encode = encode
        self._max_entries = max_entries

    def _joiner(self, partition: int) -> Joiner:
        joiner = self.joiners[partition] = Joiner(
            self.policy, max_entries=self._max_entries, fact_types=self.windows.counted_types()
        )
        return joiner

    def apply(
        self, partition: int, event: Event, event_ms: int, watermark_ms: int | None, offset: int
    ) -> list[Finding]:
        """One event the live join has just handled, on its partition's watermark."""
        joiner = self.joiners.get(partition) or self._joiner(partition)
        out = joiner.apply(self.reducer.reduce(event, event_ms), event_ms, watermark_ms, offset)
        if not out and (self.windows.due_ms is None or watermark_ms is None or self.windows.due_ms > watermark_ms):
            return []
        return self._counted(out)

    def advance(self, marks: Mapping[int, int]) -> list[Finding]:
        """A quiet stream's timers: each partition's join to its watermark (``marks``)."""
        findings: list[Finding] = []
        for partition, watermark in marks.items():
            joiner = self.joiners.get(partition)
            if joiner is not None:
                findings += self._counted(joiner.advance_to(watermark))
        return findings

    def _counted(self, out: Sequence[Output]) -> list[Finding]:
        """The window stage on the slowest assigned partition's watermark: none until each has one, as the live
        stage waits for every partition's mark (a partition not heard from yet may still bring old facts)."""
        joiners = self.joiners.values()
        marks = [joiner.watermark_ms for joiner in joiners]
        newest = [m for joiner in joiners if (m := joiner.max_event_ms) is not None]
        watermark = None if None in marks else min(marks, default=None)  # type: ignore[type-var]
        return count_windows(self.windows, out, watermark, max(newest, default=None), self.stats)

    def take_assignment(self, partitions: set[int], live_entries: Mapping[int, Mapping[str, JoinEntry]]) -> None:
        """After a rebalance: joins of partitions given away are dropped; the others take a copy of each live
        join entry just recovered for them (``live_entries``, by partition) that they do not hold yet."""
        for partition in set(self.joiners) - partitions:
            del self.joiners[partition]
        for partition in sorted(partitions):
            joiner = self.joiners.get(partition) or self._joiner(partition)
            store = joiner.store
            for request_id, entry in live_entries.get(partition, {}).items():
                if request_id not in store:
                    copy = store[request_id] = entries.decode(entries.encode(entry))  # the live join changes its own
                    joiner.restore(request_id, copy)

    def set_policy(self, policy: Policy) -> None:
        """SIGHUP: the candidate file read again; join state, timers and windows carry over."""
        self.policy = policy
        self.reducer.set_policy(policy)
        self.windows.set_policy(policy)
        for joiner in self.joiners.values():
            joiner.set_policy(policy, self.windows.counted_types())

    async def send(self, findings: list[Finding]) -> None:
        """Findings to the shadow-alerts topic; returns once the broker has them."""
        if findings:
            records = [(finding.alert_id.encode(), self._encode(finding)) for finding in findings]
            await asyncio.gather(*await self._writer.write(records))
