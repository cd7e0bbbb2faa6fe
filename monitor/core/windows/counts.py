"""Event-time windows: counts per key in tumbling or hopping windows, closed by the watermark.

A window ``[start, start + size)`` closes once the watermark passes
``start + size``; closed windows are handed out in start order
and forgotten, so state is bounded by the number of open windows per key.
An addition to a window that has already closed is refused and counted
(``late_additions``): the caller's event was later than the watermark allowed.

Counts are plain integer lists (``fields`` of them per window), so one
structure serves "disclosures" and "responses, disclosures" alike.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WindowCounts(Generic[K]):
    """Per-key counts in windows of ``size_ms``, a new one every ``hop_ms`` (tumbling when equal)."""

    __slots__ = ("_closing", "_fields", "_hop_ms", "_open", "_size_ms", "_watermark_ms", "late_additions")

    def __init__(self, size_ms: int, hop_ms: int | None = None, fields: int = 1) -> None:
        hop_ms = size_ms if hop_ms is None else hop_ms
        if size_ms <= 0 or hop_ms <= 0 or size_ms % hop_ms:
            raise ValueError("window size must be a positive multiple of the hop")
        self._size_ms, self._hop_ms, self._fields = size_ms, hop_ms, fields
        self._open: dict[tuple[K, int], list[int]] = {}
        self._closing: list[tuple[int, int, K]] = []  # (close time, start, key), a heap
        self._watermark_ms: int | None = None
        self.late_additions = 0

    def add(self, key: K, at_ms: int, field: int = 0, amount: int = 1) -> None:
        """Count ``amount`` into ``field`` of every window of ``key`` that contains ``at_ms``."""
        hop, size = self._hop_ms, self._size_ms
        last_start = at_ms - at_ms % hop
        start = last_start - size + hop
        while start <= last_start:
            window = (key, start)
            counts = self._open.get(window)
            if counts is None:
                close_at = start + size
                if self._watermark_ms is not None and close_at <= self._watermark_ms:
                    self.late_additions += 1
                    start += hop
                    continue
                counts = self._open[window] = [0] * self._fields
                heapq.heappush(self._closing, (close_at, start, key))
            counts[field] += amount
            start += hop

    def peek(self, key: K, at_ms: int) -> list[int] | None:
        """The counts of the newest window of ``key`` containing ``at_ms``, if open."""
        return self._open.get((key, at_ms - at_ms % self._hop_ms))

    def close(self, watermark_ms: int) -> Iterator[tuple[K, int, list[int]]]:
        """``(key, window start, counts)`` of every window the watermark has passed, oldest first."""
        self._watermark_ms = watermark_ms if self._watermark_ms is None else max(self._watermark_ms, watermark_ms)
        closing = self._closing
        while closing and closing[0][0] <= watermark_ms:
            _close_at, start, key = heapq.heappop(closing)
            yield key, start, self._open.pop((key, start))

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack-able) from which :meth:`restore` rebuilds these counts."""
        return {
            "size": self._size_ms,
            "hop": self._hop_ms,
            "fields": self._fields,
            "watermark": self._watermark_ms,
            "late": self.late_additions,
            "open": [[key, start, counts] for (key, start), counts in self._open.items()],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> WindowCounts[Any]:
        counts: WindowCounts[Any] = cls(state["size"], state["hop"], state["fields"])
        counts._watermark_ms, counts.late_additions = state["watermark"], state["late"]
        for key, start, values in state["open"]:
            key = tuple(key) if isinstance(key, list) else key  # tuple keys come back from msgpack as lists
            counts._open[(key, start)] = list(values)
            counts._closing.append((start + counts._size_ms, start, key))
        heapq.heapify(counts._closing)
        return counts

    def same_shape(self, size_ms: int, hop_ms: int | None = None) -> bool:
        return self._size_ms == size_ms and self._hop_ms == (size_ms if hop_ms is None else hop_ms)

    def next_close_ms(self) -> int | None:
        return self._closing[0][0] if self._closing else None

    def __len__(self) -> int:
        return len(self._open)
