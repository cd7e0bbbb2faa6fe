"""The live worker's accounting of disclosures (``dismon worker --ledger``): the group's one ledger writer.

Every worker's join makes an accounting entry for each disclosure it judges (monitor/core/ledger.py) and
sends it with its window facts (monitor/live/relay.py) to the worker that has the facts topic's one
partition. That worker appends the entries it does not hold yet to ``<prefix>.ledger`` (one partition,
unlimited retention), and at an interval and when it stops, or gives the partition up, a signed checkpoint
to ``<prefix>.ledger-checkpoints``. The record at offset n is the entry at position n, so the topic is the
ledger that ``dismon ledger verify`` recomputes.

Exactly once across restarts and rebalances: the writer reads the whole ledger topic back when it takes
the facts partition, and an entry is known by its id, a hash of its content. A facts record read again after
a crash, or an event handled again (its disclosure judged the same way, so its entry has the same id), adds
nothing. The entries reach the broker before the facts records that carried them are acked (the pipeline's
checkpoint order), so none is lost either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitor.core.ledger import AccountingEntry
from monitor.errors import BrokerError
from monitor.live.kafka import KafkaSettings, read_partitions
from monitor.live.topic_writer import TopicWriter
from monitor.outputs.ledger import LedgerLog, checkpoint_bytes
from monitor.outputs.metrics import LedgerMetrics

log = logging.getLogger("dismon.worker")


class LedgerHost:
    """The ledger on the worker that owns the facts topic's partition (and nothing on the others)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        key: Ed25519PrivateKey,
        entries: TopicWriter,
        checkpoints: TopicWriter,
        interval_ms: int,
        now_ms: Callable[[], int],
        metrics: LedgerMetrics,
    ) -> None:
        self._kafka, self._key = kafka, key
        self._entries, self._checkpoints = entries, checkpoints
        self._interval_ms, self._now_ms = interval_ms, now_ms
        self.metrics = metrics
        self.owned = False
        self.log: LedgerLog | None = None
        self._pending: list[tuple[bytes, bytes]] = []  # (entry id, record) not written yet
        self._signed_ms = 0

    def add(self, entries: list[AccountingEntry]) -> None:
        """Entries from a facts record; those the ledger holds already add nothing."""
        ledger = self.log
        if ledger is None:
            return
        for entry in entries:
            added = ledger.add(entry)
            if added is not None:
                entry_id, line = added
                self._pending.append((entry_id.encode(), line))

    async def save(self) -> None:
        """The new entries to the ledger topic, and a checkpoint when the interval has passed; returns once the
        broker has them (before the facts records that brought them are acked)."""
        if self.log is None:
            return
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*await self._entries.write_to((0, key, line) for key, line in pending))
            self.metrics.appended(len(pending))
        if self._now_ms() - self._signed_ms >= self._interval_ms:
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """A signed checkpoint of the tree as written. One is signed at every interval even when nothing was
        appended, as Certificate Transparency logs do: a fresh signature says the writer is alive and the
        ledger unchanged, and DismonLedgerStalled fires when they stop."""
        ledger = self.log
        if ledger is None or self._pending:
            return
        checkpoint = ledger.sign(self._now_ms())
        await asyncio.gather(*await self._checkpoints.write_to([(0, b"checkpoint", checkpoint_bytes(checkpoint))]))
        self._signed_ms = self._now_ms()
        self.metrics.checkpointed(checkpoint.size, self._signed_ms / 1000)

    async def take(self, owned: bool, on_fatal: Callable[[BaseException], None]) -> None:
        """After a rebalance: on gaining the facts partition, read the ledger back (ids and tree); on losing
        it, drop it (the next owner reads it back). A broker that cannot give it back is fatal: writing on
        without it would duplicate entries and break the tree."""
        if owned == self.owned:
            return
        self.owned, self.log, self._pending = owned, None, []
        if not owned:
            return
        ledger = LedgerLog(self._key)
        topic = self._kafka.ledger_topic
        count = 0

        def on_record(_partition: int, _key: bytes | None, value: bytes | None) -> None:
            nonlocal count
            if value is not None:
                ledger.load(value, f"{topic} offset {count}")
                count += 1

        try:
            await read_partitions(self._kafka, topic, [0], on_record)
        except BrokerError as exc:
            log.critical("cannot read the ledger back from %s: %s; stopping", topic, exc)
            on_fatal(exc)
            return
        self.log = ledger
        log.info("ledger taken back: %d entries", ledger.size)
