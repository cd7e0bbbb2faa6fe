"""Join-state changes straight to a Faust table's changelog topic, a record batch per partition.

Faust writes a table's changelog one key at a time: every assignment becomes a ``FutureMessage`` that
waits in Faust's producer buffer and is serialised and handed to aiokafka on its own; py-spy put that
at a quarter of the worker's time. The worker knows when its writes must be durable (after each batch,
once its alerts are out: ``Runtime._commit``), so it writes them itself, in aiokafka record batches.

Everything else stays Faust's: the records are the ones Faust would write (the request id as raw UTF-8
key, the msgpack entry as value, a tombstone for a deleted entry, the partition the producer's murmur2
partitioner gives the key, as for the input topics), so recovery after a restart or a rebalance reads
them back into the table as before; and Faust's commit flushes the producer, which waits for these
batches, before it commits an offset.

Faust's in-memory store forgets on a rebalance only the keys it recovered itself, never the ones written
while running; :meth:`ChangelogWriter.forget` drops the keys of partitions no longer assigned, so a worker
that gave a partition away does not go on firing timers for requests it no longer sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger("dismon.changelog")
V = TypeVar("V")


class ChangelogWriter(Generic[V]):
    def __init__(self, producer: Callable[[], Any], topic: str, partitions: int, encode: Callable[[V], bytes],
                 on_failure: Callable[[BaseException], None]) -> None:
        self._producer = producer  # the running aiokafka producer (Faust's)
        self.topic = topic
        self._partitions = list(range(partitions))
        self._encode = encode
        self._on_failure = on_failure
        self._partitioner = DefaultPartitioner()
        self._owned: set[int] = set()  # partitions assigned at the last rebalance
        self.records = 0  # written so far

    def partition_of(self, key: str) -> int:
        """The changelog partition of ``key``: the input topics' partition of the same request id."""
        return int(self._partitioner(key.encode(), self._partitions, self._partitions))

    async def write(self, changes: Mapping[str, V | None]) -> None:
        """Hand ``changes`` (None: deleted) to aiokafka; returns once they are queued, not delivered."""
        if not changes:
            return
        producer = self._producer()
        partitions, encode, partitioner = self._partitions, self._encode, self._partitioner
        batches: dict[int, Any] = {}
        for key, value in changes.items():
            raw_key = key.encode()
            partition = partitioner(raw_key, partitions, partitions)
            raw_value = None if value is None else encode(value)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=raw_key, value=raw_value, timestamp=None) is None:  # full: send it, start another
                await self._send(producer, batch, partition)
                batch = batches[partition] = producer.create_batch()
                batch.append(key=raw_key, value=raw_value, timestamp=None)
        for partition, batch in batches.items():
            await self._send(producer, batch, partition)
        self.records += len(changes)

    async def _send(self, producer: Any, batch: Any, partition: int) -> None:
        delivered: asyncio.Future[Any] = await producer.send_batch(batch, self.topic, partition=partition)
        delivered.add_done_callback(self._delivered)

    def _delivered(self, delivered: asyncio.Future[Any]) -> None:
        if not delivered.cancelled() and delivered.exception() is not None:
            # aiokafka gave up after its retries: the offsets of the events behind these writes must not be
            # committed. Stop the worker; it resumes from the last commit.
            self._on_failure(delivered.exception())  # type: ignore[arg-type]

    def forget(self, store: MutableMapping[str, V], assigned: Iterable[int]) -> int:
        """After a rebalance: drop from ``store`` the keys of partitions not ``assigned``; returns how many."""
        kept = set(assigned)
        given_away, self._owned = self._owned - kept, kept
        if not given_away:
            return 0  # (a pass over every key costs seconds at a million entries)
        stale = [key for key in store if self.partition_of(key) in given_away]
        for key in stale:
            del store[key]
        return len(stale)
