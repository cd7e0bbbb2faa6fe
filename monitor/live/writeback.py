"""Join state in front of a durable table: reads see every write at once, the table gets them at ``flush()``.

The worker's join state is a changelog-backed table. The worker buffers the join's writes here between
checkpoints (every quarter second, and on a rebalance or stop) and writes what ``flush()`` returns to the
changelog once the alerts of those batches are on the broker, before their offsets are acked
(``Pipeline.checkpoint`` in monitor/live/pipeline.py). So the changelog never says a finding was raised
before the alert is out, and an event whose effect on the state is not on the broker is never marked done.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class WriteBack(MutableMapping[str, V], Generic[V]):
    def __init__(self, table: MutableMapping[str, V]) -> None:
        self.table = table
        self._pending: dict[str, V | None] = {}  # None: deleted
        self._growth = 0  # len(self) - len(self.table), kept as writes come (len() is called per new request)

    def get(self, key: str, default: V | None = None) -> V | None:  # type: ignore[override]
        value = self._pending.get(key, _MISSING)
        if value is _MISSING:
            return self.table.get(key, default)
        return default if value is None else value  # type: ignore[return-value]

    def __getitem__(self, key: str) -> V:
        value = self.get(key, None)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        pending = self._pending
        previous = pending.get(key, _MISSING)
        if previous is None or (previous is _MISSING and key not in self.table):
            self._growth += 1
        pending[key] = value

    def __delitem__(self, key: str) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._pending[key] = None
        self._growth -= 1

    def __iter__(self) -> Iterator[str]:
        pending = self._pending
        for key in list(self.table):
            if key not in pending:
                yield key
        for key, value in list(pending.items()):
            if value is not None:
                yield key

    def __len__(self) -> int:
        return len(self.table) + self._growth

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> dict[str, V | None]:
        """Write every pending change to the table; returns them (None: deleted), for a changelog."""
        table, changes = self.table, self._pending
        for key, value in list(changes.items()):
            if value is not None:
                table[key] = value
            elif table.pop(key, _MISSING) is _MISSING:
                del changes[key]  # written and deleted within one batch: never durable, nothing to delete
        self._pending = {}
        self._growth = 0
        return changes
