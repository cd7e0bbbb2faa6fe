"""One input partition's share of the work, as a Kafka Streams task: its join state, its timers and its own
event time.

Requests, responses and disposals of one request land in partitions of the same number (the topics are
co-partitioned, whatever hash the producers use), so everything the join knows about a request belongs to
that number: the task of partition ``p`` holds the join entries first written by events of ``requests-p``,
``responses-p`` and ``disposals-p``, writes them to partition ``p`` of the changelog, and fires their timers
on the watermark of those three partitions alone. When a worker takes over partition ``p`` from one that
died, it takes over the task whole: state and event time. A watermark shared by all of a worker's
partitions would instead have run ahead on the partitions it kept while ``p`` was unassigned, and fired the
taken-over requests' timers (expiry, orphan grace) at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from monitor.core.join import JoinEntry
from monitor.core.joiner import Joiner
from monitor.core.ledger import AccountingEntry
from monitor.core.observe import Observer
from monitor.core.policy import Policy
from monitor.live.clock import PartitionClock
from monitor.live.writeback import WriteBack


class Task:
    """The join of one input partition number."""

    def __init__(
        self,
        partition: int,
        topics: Iterable[str],
        policy: Policy,
        entries: dict[str, JoinEntry],
        clock: PartitionClock,
        observer: Observer | None,
        max_entries: int | None,
        accounting: Callable[[AccountingEntry], None] | None = None,
    ) -> None:
        self.partition = partition
        self.join_state: WriteBack[JoinEntry] = WriteBack(entries)
        self.joiner = Joiner(policy, self.join_state, observer=observer, max_entries=max_entries, accounting=accounting)
        self.clock = clock
        clock.assign((topic, partition) for topic in topics)
        self.position = ("", -1)  # input partition and offset of the last event handled
        self.joiner.restore_all(entries)  # recovered from the changelog: re-arm their timers

    def take(self, request_id: str, entry: JoinEntry) -> None:
        """An entry recovered from the changelog after the task started (Faust's recovery of a partition)."""
        self.join_state.table[request_id] = entry
        self.joiner.restore(request_id, entry)

    def __len__(self) -> int:
        return len(self.join_state)


def share_of(max_entries: int | None, partitions: int) -> int | None:
    """Each task's share of the join-state cap (``--max-join-entries``): the cap split evenly over the input
    partitions, as a flood of distinct request ids is spread by the producers' hash."""
    return None if max_entries is None else max(1, -(-max_entries // max(1, partitions)))
