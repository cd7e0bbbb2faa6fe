"""The one bounded cache of the core: values that repeat (names, cities, statutes) computed once.

It empties itself when full rather than evicting one entry at a time: a stream's repeating values come
back within a few thousand events, and an LRU's bookkeeping on every hit costs more than the misses a
clear now and then causes.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_LIMIT = 65_536


class BoundedCache(dict[K, V]):
    """A dict (lookups are plain ``dict.get``) whose :meth:`put` never lets it grow past ``limit``."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> V:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
