"""Faust, handing the worker each fetched batch of input messages at once.

Faust takes every message through its conductor, a queue and a stream iterator, with four tasks and a
wait around each: about 100 µs a message, most of what a worker spends (docs/performance.md, "Worker").
:class:`BatchApp` keeps all the rest of Faust (group membership, co-partitioned assignment, the join
table's changelog and its recovery, offset commits, flow control during rebalances) and changes only
how messages of the input topics reach the worker:

* each batch a fetch returns is handed to one coroutine, ``on_batch``: the client's records, in the order
  Faust's scheduler would give them to streams, without a Faust message object each;
* every ``checkpoint_interval`` seconds, and before partitions are given up or the app stops,
  ``on_checkpoint`` makes what the batches since the last one did durable, and only then are their
  offsets acked, a partition's at once: an offset is committed only once its message was handled and its
  effects are on the broker (at least once, as with a stream);
* a partition assigned again forgets its last read offset (see ``on_partitions_assigned``);
* messages of any other topic (the changelog, while recovering) take Faust's own path;
* a fetch waits at most ``FETCH_MAX_WAIT_MS`` for data, not Faust's 1.5 s (see below).

Offsets read before a seek back are skipped and gaps recorded exactly as Faust's own loop does
(``faust.transport.consumer.Consumer._drain_messages``, which this replaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger("dismon.worker")
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]
Checkpoint = Callable[[], Awaitable[None]]

#: How long the broker may hold a fetch that finds no data. aiokafka keeps one fetch in flight per broker and
#: leaves out of it every partition whose records are still waiting to be handled. So while the busy
#: partitions' records are handled, the next fetch asks only for the quiet ones (disposals, say), and the
#: broker holds it until they get data or this much time passes; the busy partitions are not fetched again
#: until then. With Faust's fixed 1,500 ms, alerts came out in bursts up to two seconds late at 2,000 events/s
#: (bench/latency_bench.py --timeline). A quiet worker pays for this with ten small fetches a second.
FETCH_MAX_WAIT_MS = 100


class BatchApp(faust.App):
    """A Faust app whose consumer hands messages of ``batch_topics`` to ``on_batch``, a batch at a time."""

    batch_topics: Collection[str] = frozenset()
    on_batch: BatchHandler | None = None
    on_checkpoint: Checkpoint | None = None
    checkpoint_interval: float = 0.25  # seconds

    def _new_transport(self) -> Any:
        return _BatchTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        # Before Faust stops the consumer (and with it maybe a batch half-way): what was handled is kept.
        consumer = self._consumer
        if isinstance(consumer, BatchConsumer):
            with contextlib.suppress(ConsumerNotStarted):
                if consumer.assignment():
                    await consumer.checkpoint()
        await super().on_stop()


class BatchConsumer(aiokafka_driver.Consumer):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._unacked: dict[Any, list[int]] = {}  # partition -> offsets handled, to ack at the next checkpoint
        self._last_checkpoint = time.monotonic()

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        app = cast(BatchApp, self.app)
        handler, batch_topics = app.on_batch, app.batch_topics
        assert handler is not None and app.on_checkpoint is not None, "BatchApp.on_batch or on_checkpoint is not set"
        callback, to_message = self.callback, self._to_message
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        acquire_flow_control = app.flow_control.acquire
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                fetched: dict[Any, list[ConsumerRecord]] = {}
                for tp, records in (await self._fetch()).items():
                    records = self._unread(records, read_offset[tp])
                    if not records:
                        continue
                    await self._add_gaps(tp, records, read_offset[tp], acks_enabled_for(tp.topic))
                    read_offset[tp] = records[-1].offset
                    if tp.topic in batch_topics:
                        fetched[tp] = records  # acked at a checkpoint, see checkpoint()
                    else:
                        for record in records:
                            await self.wait_first(callback(to_message(tp, record)), self.suspend_flow.wait())
                if fetched:
                    await acquire_flow_control()  # held while a rebalance is under way
                    assigned = self.assignment()
                    fetched = {tp: records for tp, records in fetched.items() if tp in assigned}  # given away meanwhile
                    await handler(round_robin(fetched))
                    unacked = self._unacked
                    for tp, records in fetched.items():
                        unacked.setdefault(tp, []).extend([record.offset for record in records])
                if time.monotonic() - self._last_checkpoint >= app.checkpoint_interval:
                    await self.checkpoint()
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise

    @staticmethod
    def _unread(records: list[ConsumerRecord], last: int | None) -> list[ConsumerRecord]:
        """``records`` without those read before the partition was sought back (they come again)."""
        if last is None or records[0].offset >= last:
            return records
        return [record for record in records if record.offset >= last]

    async def _add_gaps(self, tp: Any, records: list[ConsumerRecord], last: int | None, acks_enabled: bool) -> None:
        """Record, as Faust does, the offsets skipped between records read (transaction markers, compaction):
        the commit passes over them."""
        if not acks_enabled or (last is not None and records[-1].offset - last == len(records)):
            return  # consecutive from the last read: no gap (the common case, checked once a fetch)
        for record in records:
            if last and record.offset - last > 1:
                await self._add_gap(tp, last + 1, record.offset)
            last = record.offset

    async def checkpoint(self) -> None:
        """Make durable what the batches handled so far did, then ack their messages. Called by the consumer
        loop after a batch and by a timer (the loop may wait a second for records), on a rebalance and on stop."""
        app = cast(BatchApp, self.app)
        assert app.on_checkpoint is not None
        handled, self._unacked = self._unacked, {}
        self._last_checkpoint = time.monotonic()
        await app.on_checkpoint()
        now = time.monotonic()
        inbound = app.monitor.stream_inbound_time  # Faust's slow-stream warnings look at it
        for tp, offsets in handled.items():
            # Not told to Faust message by message (``track_message``): Faust would wait for each, before it
            # gives partitions up, to be acked; on_partitions_revoked makes them durable and acks them instead.
            self._ack_offsets(tp, offsets)
            inbound[tp] = now
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def _ack_offsets(self, tp: Any, offsets: list[int]) -> None:
        """Faust's ``Consumer.ack`` for a partition's handled offsets at once (its bookkeeping, not its
        per-message sensors: dismon's metrics count events, monitor/outputs/metrics.py)."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is not None and min(offsets) < committed:
                offsets = [offset for offset in offsets if offset >= committed]
            index = self._acked_index[tp]
            fresh = set(offsets).difference(index)
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)
            notify(self._waiting_for_ack)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # What was handled is made durable and acked before Faust commits and gives the partitions up.
        if self._unacked:
            handled = sum(len(offsets) for offsets in self._unacked.values())
            log.info("checkpoint before giving up partitions (%d messages handled since the last)", handled)
            await self.checkpoint()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        # Faust skips records below a partition's last read offset (read before a seek back, they come
        # again), and after a rebalance resets that offset only for partitions with a committed offset. A
        # partition given away and assigned again without one would skip what another worker handled but
        # did not commit: forget those read offsets; the seek to committed offsets sets the others.
        for tp in assigned:
            self._read_offset.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _fetch(self) -> dict[Any, list[ConsumerRecord]]:
        """The next fetched records by partition, as Faust's ``getmany`` gets them, but none dropped unseen:
        whatever is fetched and not handed on (a rebalance began, the partition is paused) is sought back to,
        so the consumer reads it again rather than going on past it."""
        records, active = await self._wait_next_records(1.0)
        if not records or self.should_stop:
            return {}
        if not self.flow_active:
            # A rebalance began while fetching. Faust seeks back to the committed offsets, but a partition with
            # none committed yet then stays past these records (found by the two-worker test): seek each
            # partition back to its first record here; the recovery after the rebalance seeks to committed
            # offsets where there are some.
            await self._seek_back({tp: batch[0].offset for tp, batch in records.items() if batch})
            return {}
        fetched: dict[Any, list[ConsumerRecord]] = {}
        skipped: dict[Any, int] = {}
        buffered = self._buffered_partitions
        for tp, batch in records.items():
            if not batch:
                continue
            if active is None or tp in active or tp in buffered:
                fetched[tp] = batch
            else:
                skipped[tp] = batch[0].offset  # paused meanwhile
        await self._seek_back(skipped)
        return fetched

    async def _seek_back(self, offsets: dict[Any, int]) -> None:
        for tp, offset in offsets.items():
            log.info("records of %s fetched but not handed on: seeking back to offset %d", tp, offset)
            with contextlib.suppress(IllegalStateError):  # no longer assigned: its next owner starts from the commit
                await self.seek(tp, offset)


def round_robin(records: dict[Any, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    """The records of several partitions in the order Faust's scheduler hands them to streams: round robin over
    the topics, and within each topic over its partitions (``faust.transport.utils.DefaultSchedulingStrategy``)."""
    by_topic: dict[str, list[list[ConsumerRecord]]] = {}
    for tp, batch in records.items():
        by_topic.setdefault(tp.topic, []).append(batch)
    return _interleave([_interleave(batches) for batches in by_topic.values()])


def _interleave(lists: list[list[ConsumerRecord]]) -> list[ConsumerRecord]:
    """The first item of each list, then the second of each that has one, and so on."""
    if len(lists) <= 1:
        return lists[0] if lists else []
    return list(filter(_not_gap, itertools.chain.from_iterable(itertools.zip_longest(*lists, fillvalue=_GAP))))


_GAP: Any = object()
_not_gap = functools.partial(operator.is_not, _GAP)


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # Faust passes 1,500 and has no setting for it
        return consumer


class _BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer
