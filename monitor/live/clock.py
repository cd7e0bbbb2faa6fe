"""The live worker's event-time clock: a watermark over several Kafka topic partitions.

The watermark is the smallest of the newest event times seen on each active
source (a topic and partition: requests, responses and disposals are fetched
independently), minus the allowed lateness: a consumer that reads far ahead in
one source does not make the others late. A partition that has been silent for
``idle_ms`` of wall-clock time stops holding the watermark back; when every
partition is silent, the watermark advances by the wall-clock time elapsed
since the last event (SPEC §7), so a quiet stream still fires SLA and orphan
alerts. The wall clock is passed in; tests drive it.

The worker asks for the watermark after every event, with the wall clock read once a batch. It is kept
rather than recomputed: at the same wall-clock time, an event of a source already heard then moves the
watermark only if that source held it (the smallest newest event time), and then only the smallest over
the same sources is taken again; only a new wall-clock time or a source not heard at it makes
:meth:`PartitionClock.watermark` look at every source again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

_ANY: Hashable = object()  # the watermark came from no one source: any newer event time may move it
_NOBODY: Hashable = object()  # no newer event time of a source heard already can move it (one is unheard)


class PartitionClock:
    def __init__(self, allowed_lateness_ms: int, idle_ms: int | None, wall_ms: Callable[[], int]) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_ms = idle_ms  # None: never advance on wall-clock time
        self._wall_ms = wall_ms
        self._newest: dict[Hashable, int] = {}  # source -> newest event time
        self._heard: dict[Hashable, int] = {}  # source -> wall time of its last event
        self._assigned: set[Hashable] = set()
        self._watermark_ms: int | None = None
        self._last_event_wall_ms: int | None = None
        # The wall-clock time of the last full look at every source (None: it is out of date), and the source
        # whose newest event time gave the watermark then.
        self._looked_at: int | None = None
        self._holder: Hashable = _NOBODY
        self._active: list[Hashable] = []  # the sources not idle then
        self._holder_moved = False  # the holder has a newer event since; the others are as they were

    def assign(self, sources: Iterable[Hashable]) -> None:
        self._looked_at = None
        self._assigned = set(sources)
        for source in list(self._newest):
            if source not in self._assigned:
                del self._newest[source], self._heard[source]

    def observe(self, source: Hashable, event_ms: int, now_ms: int | None = None) -> None:
        """An event of ``source``; ``now_ms``: the wall clock, if the caller has read it already (once a batch)."""
        now = self._wall_ms() if now_ms is None else now_ms
        newest = self._newest.get(source)
        if newest is None or event_ms > newest:
            self._newest[source] = event_ms
            if self._holder is _ANY:
                self._looked_at = None
            elif self._holder == source:
                self._holder_moved = True
        if self._heard.get(source) != now or self._last_event_wall_ms != now:
            self._looked_at = None  # heard again after a while (or first): it may have been idle, or unheard
            self._assigned.add(source)
            self._heard[source] = now
            self._last_event_wall_ms = now

    def watermark(self, now_ms: int | None = None) -> int | None:
        """The current watermark (never moves backwards), or None before any event."""
        now = self._wall_ms() if now_ms is None else now_ms
        if now == self._looked_at:
            if self._holder_moved:  # the smallest over the same sources again
                self._holder_moved = False
                newest = self._newest
                self._holder = min(self._active, key=newest.__getitem__)
                self._raise_to(newest[self._holder] - self.allowed_lateness_ms)
            return self._watermark_ms
        self._looked_at, self._holder, self._holder_moved = now, _NOBODY, False
        idle = self.idle_ms
        active = {
            source: newest
            for source, newest in self._newest.items()
            if idle is None or now - self._heard[source] < idle
        }
        # An assigned partition not heard from yet holds the watermark, until the stream has been idle.
        unheard = any(p not in self._newest for p in self._assigned)
        since_event = None if self._last_event_wall_ms is None else now - self._last_event_wall_ms
        waiting = unheard and (idle is None or since_event is None or since_event < idle)
        candidate: int | None = None
        if active and not waiting:
            self._active = list(active)
            self._holder = min(active, key=active.__getitem__)
            candidate = active[self._holder] - self.allowed_lateness_ms
        elif not active and self._newest and idle is not None and self._last_event_wall_ms is not None:
            self._holder = _ANY
            candidate = max(self._newest.values()) - self.allowed_lateness_ms + (now - self._last_event_wall_ms)
        if candidate is not None:
            self._raise_to(candidate)
        return self._watermark_ms

    def _raise_to(self, candidate: int) -> None:
        if self._watermark_ms is None or candidate > self._watermark_ms:
            self._watermark_ms = candidate
