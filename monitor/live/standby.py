"""Warm standby: each worker follows the join-state changelog of the partitions it does not own, so that when
their owner dies it takes them over from memory and reads only what was written since.

Kafka Streams keeps standby replicas the same way. The copy holds each request id's latest changelog value
as the bytes the owner wrote (decoded only when taken over, so a standby costs a dictionary entry a record),
and the changelog offset it has read up to. Faust's own standby replicas kept a worker that had been
through a rebalance from ever consuming again (faust-streaming 0.15), so the worker has this one instead.

Memory: a worker holds, beside the entries of its own partitions, the encoded entries of all the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from monitor.live.kafka import KafkaSettings

log = logging.getLogger("dismon.worker")


@dataclass(slots=True)
class Copy:
    """One partition's copy: the latest value of each key, up to ``next_offset``; ``last`` is the record at
    ``next_offset - 1`` (None before the first)."""

    values: dict[str, bytes] = field(default_factory=dict)
    next_offset: int = 0
    last: tuple[bytes, bytes | None] | None = None
    last_timestamp: int = -1  # of ``last``, in ms

    def apply(self, offset: int, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        if key is not None:
            if value is None:
                self.values.pop(key.decode(), None)
            else:
                self.values[key.decode()] = value
            self.last, self.last_timestamp = (key, value), timestamp_ms
        self.next_offset = offset + 1


class Standby:
    """Follows ``topic``'s partitions that :meth:`follow` names; :meth:`take` hands a partition's copy over."""

    def __init__(self, kafka: KafkaSettings, topic: str, make_consumer: Callable[[], AIOKafkaConsumer] | None = None):
        self._topic = topic
        self._make_consumer = make_consumer or (
            lambda: AIOKafkaConsumer(
                **kafka.client_options(), group_id=None, enable_auto_commit=False, auto_offset_reset="none"
            )
        )
        self._copies: dict[int, Copy] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._changed = asyncio.Event()  # the partitions followed changed: assign them before the next fetch
        self._changed.set()

    def follow(self, partitions: Iterable[int]) -> None:
        """Follow exactly ``partitions`` from now on: new ones from the changelog's start, the rest forgotten."""
        wanted = set(partitions)
        for partition in set(self._copies) - wanted:
            del self._copies[partition]
        for partition in wanted - set(self._copies):
            self._copies[partition] = Copy()
        self._changed.set()

    def take(self, partition: int) -> Copy | None:
        """The partition's copy, which this worker now owns; it is no longer followed."""
        copy = self._copies.pop(partition, None)
        if copy is not None:
            self._changed.set()
        return copy

    def held(self) -> int:
        """Request ids held over the partitions followed (for the metrics)."""
        return sum(len(copy.values) for copy in list(self._copies.values()))

    async def run(self) -> None:
        """Follow until cancelled; a broker error is logged and the reading starts again a moment later."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("standby: %s; following again in 5 s", exc)
                await asyncio.sleep(5)

    async def _follow(self) -> None:
        consumer = self._consumer = self._make_consumer()
        await consumer.start()
        try:
            while True:
                if self._changed.is_set():
                    self._changed.clear()
                    await self._assign(consumer)
                if not self._copies:
                    await self._changed.wait()
                    continue
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except OffsetOutOfRangeError as exc:
                    for tp in exc.args[0] if exc.args and isinstance(exc.args[0], dict) else ():
                        log.warning(
                            "standby of partition %d: the changelog was truncated; reading it again", tp.partition
                        )
                        self._copies[tp.partition] = Copy()
                    self._changed.set()
                    continue
                copies = self._copies
                for tp, records in batch.items():
                    copy = copies.get(tp.partition)
                    if copy is None:
                        continue  # taken over meanwhile
                    for record in records:
                        copy.apply(record.offset, record.key, record.value, record.timestamp)
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        tps = [TopicPartition(self._topic, partition) for partition in sorted(self._copies)]
        if not tps:
            consumer.unsubscribe()
            return
        consumer.assign(tps)
        fresh = [tp for tp in tps if self._copies[tp.partition].next_offset == 0]
        for tp in tps:
            if tp not in fresh:
                consumer.seek(tp, self._copies[tp.partition].next_offset)
        if fresh:
            await consumer.seek_to_beginning(*fresh)  # the changelog's first offset: 0 unless deleted
