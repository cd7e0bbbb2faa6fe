"""Records to one Kafka topic in aiokafka record batches, one per partition, sent at once.

The worker writes what its batches produced in steps, each on the broker before the next
(:mod:`monitor.live.pipeline`): its alerts, then at a checkpoint the window facts, the windowed rules'
state and its join-state changes to the table's changelog. Through Faust's own producer path each record
would become a ``FutureMessage`` waiting in Faust's buffer, serialised and handed to aiokafka on its own
(py-spy: a quarter of the worker's time for the changelog alone), and every send would linger 10 ms for
more records. Here each step is one record batch per partition, closed so that aiokafka sends it without
lingering.

The partition is the one given (:meth:`TopicWriter.write_to`: the join-state changelog, each task's
changes in the partition of its number) or the one aiokafka's default partitioner gives the key
(:meth:`TopicWriter.write`). Faust's commit flushes the producer, which waits for these batches, before it
commits an offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

#: partition, base offset, records, their timestamp (ms)
Delivered = Callable[[int, int, list[tuple[bytes, bytes | None]], int], None]


class TopicWriter:
    def __init__(
        self,
        producer: Callable[[], Any],
        topic: str,
        on_failure: Callable[[BaseException], None] | None = None,
        on_delivered: Delivered | None = None,
    ) -> None:
        self._producer = producer  # the running aiokafka producer (Faust's)
        self.topic = topic
        self._on_failure = on_failure  # for writes nobody awaits (see write())
        self._on_delivered = on_delivered  # each batch the broker confirmed, with its records (the local state)
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] | None = None

    async def partitions(self) -> list[int]:
        if self._partitions is None:
            self._partitions = sorted(await self._producer().partitions_for(self.topic))
        return self._partitions

    def partition_of(self, key: bytes, partitions: list[int]) -> int:
        return int(self._partitioner(key, partitions, partitions))

    async def write(self, records: Iterable[tuple[bytes, bytes | None]]) -> list[asyncio.Future[Any]]:
        """Hand ``(key, value)`` records (value None: a tombstone) to aiokafka, each to the partition the default
        partitioner gives its key; returns the futures of their delivery."""
        partitions = await self.partitions()
        return await self.write_to((self.partition_of(key, partitions), key, value) for key, value in records)

    async def write_to(self, records: Iterable[tuple[int, bytes, bytes | None]]) -> list[asyncio.Future[Any]]:
        """Hand ``(partition, key, value)`` records to aiokafka; returns the futures of their delivery.
        Delivery failures of futures nobody awaits go to ``on_failure``."""
        producer = self._producer()
        # Stamped here, not by aiokafka, when whoever is told of deliveries needs to know the stamp.
        timestamp = None if self._on_delivered is None else time.time_ns() // 1_000_000
        batches: dict[int, tuple[Any, list[tuple[bytes, bytes | None]]]] = {}
        sent: list[asyncio.Future[Any]] = []
        for partition, key, value in records:
            if partition not in batches:
                batches[partition] = (producer.create_batch(), [])
            batch, kept = batches[partition]
            if batch.append(key=key, value=value, timestamp=timestamp) is None:  # full: send it, start another
                sent.append(await self._send(producer, batch, partition, kept, timestamp))
                batch, kept = batches[partition] = (producer.create_batch(), [])
                batch.append(key=key, value=value, timestamp=timestamp)
            if self._on_delivered is not None:
                kept.append((key, value))
        for partition, (batch, kept) in batches.items():
            sent.append(await self._send(producer, batch, partition, kept, timestamp))
        return sent

    async def _send(
        self,
        producer: Any,
        batch: Any,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        timestamp: int | None,
    ) -> asyncio.Future[Any]:
        batch.close()  # complete: aiokafka sends it without waiting for its linger time
        delivered: asyncio.Future[Any] = await producer.send_batch(batch, self.topic, partition=partition)
        if self._on_failure is not None or self._on_delivered is not None:
            delivered.add_done_callback(lambda future: self._delivered(future, partition, records, timestamp))
        return delivered

    def _delivered(
        self,
        delivered: asyncio.Future[Any],
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        timestamp: int | None,
    ) -> None:
        if delivered.cancelled():
            return
        if (exc := delivered.exception()) is not None:
            if self._on_failure is not None:
                self._on_failure(exc)
        elif self._on_delivered is not None:
            self._on_delivered(partition, delivered.result().offset, records, -1 if timestamp is None else timestamp)
