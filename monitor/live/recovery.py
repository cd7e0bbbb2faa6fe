"""Recovering the join state of newly owned changelog partitions, as fast as what this worker holds allows.

Each partition starts from the best copy at hand, and only the changelog after it is read:

1. the warm standby's copy (monitor/live/standby.py), when this worker followed the partition while another
   owned it: a failover;
2. the local state (monitor/live/local_state.py), when it matches the changelog: a restart in place;
3. nothing: the whole partition is read.

The changelog is read with one consumer, its values decoded with msgspec (Faust's own recovery handles about
10,000 records/s). What was read goes on into the local state, so that the next restart finds it there.
"""

from __future__ import annotations

import logging
import time

from monitor.core.join import JoinEntry
from monitor.live import entries
from monitor.live.kafka import KafkaSettings, read_partitions, records_at
from monitor.live.local_state import Loaded, LocalState, usable
from monitor.live.standby import Copy

log = logging.getLogger("dismon.worker")


async def _local_states(
    kafka: KafkaSettings, changelog: str, local: LocalState, ends: dict[int, int]
) -> dict[int, Loaded]:
    """The partitions' local states that match the changelog; why the others are not used is logged."""
    found: dict[int, Loaded] = {}
    for partition, end in sorted(ends.items()):
        loaded = local.load(partition)
        if isinstance(loaded, Loaded):
            found[partition] = loaded
        elif end:
            log.info("join state of partition %d: reading the whole changelog: %s", partition, loaded)
    at = await records_at(
        kafka, changelog, {p: state.offset for p, state in found.items() if 0 <= state.offset < ends[p]}
    )
    for partition, loaded in list(found.items()):
        why = usable(loaded, ends[partition], at.get(partition))
        if why is not None:
            del found[partition]
            if ends[partition] or loaded.offset >= 0:
                log.warning("join state of partition %d: reading the whole changelog: %s", partition, why)
    return found


async def recover(
    kafka: KafkaSettings,
    changelog: str,
    ends: dict[int, int],
    local: LocalState | None,
    copies: dict[int, Copy],
) -> tuple[dict[int, int], dict[int, dict[str, JoinEntry]]]:
    """Recover the partitions of ``ends`` (each changelog partition's next offset) from the standby's
    ``copies``, the ``local`` state and the changelog; returns the offset each partition is complete up to
    (partitions with nothing left out), and each partition's entries."""
    started, records = time.monotonic(), 0
    for partition, copy in list(copies.items()):
        if copy.next_offset > ends[partition]:  # the changelog was recreated under the standby
            log.warning("join state of partition %d: the standby's copy is ahead of the changelog", partition)
            del copies[partition]
    rest = {p: end for p, end in ends.items() if p not in copies}
    loaded = {} if local is None else await _local_states(kafka, changelog, local, rest)
    if local is not None:
        local.forget_preloaded()
    # What is read goes to the local state: the tail after its own copy, the latest value of each key otherwise.
    tails: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in loaded}
    latest: dict[int, dict[str, bytes]] = {p: {} for p in ends if p not in loaded}
    final: dict[int, tuple[bytes, bytes | None] | None] = {}
    stamps: dict[int, int] = {}  # the final record's timestamp, by partition
    starts: dict[int, int] = {}
    tables: dict[int, dict[str, JoinEntry]] = {p: {} for p in ends}
    for partition, copy in copies.items():
        values, table, decode = copy.values, tables[partition], entries.decode
        for request_id, value in values.items():
            table[request_id] = decode(value)
            values[request_id] = entries.current(value)
        latest[partition], final[partition], starts[partition] = copy.values, copy.last, copy.next_offset
        stamps[partition] = copy.last_timestamp
    for partition, state in loaded.items():
        tables[partition] = state.entries
        starts[partition] = state.offset + 1

    def apply(partition: int, key: bytes | None, value: bytes | None) -> None:
        nonlocal records
        records += 1
        if key is None:
            return
        request_id = key.decode()
        if value is None:
            tables[partition].pop(request_id, None)
        else:
            tables[partition][request_id] = entries.decode(value)
            value = entries.current(value)  # the local state holds this release's encoding only
        if local is None:
            return
        final[partition] = (key, value)
        tail = tails.get(partition)
        if tail is not None:
            tail.append((key, value))
        elif value is None:
            latest[partition].pop(request_id, None)
        else:
            latest[partition][request_id] = value

    todo = sorted(p for p, end in ends.items() if end > starts.get(p, 0))
    last = await read_partitions(kafka, changelog, todo, apply, starts, stamps) if todo else {}
    for partition, start in starts.items():
        last.setdefault(partition, start - 1)
    if local is not None:
        for partition, state in loaded.items():
            local.resume(partition, state)
            local.append(partition, state.offset + 1, tails[partition], stamps.get(partition, -1))
        for partition, values in latest.items():
            local.start(partition, values, last.get(partition, -1), final.get(partition), stamps.get(partition, -1))
    log.info(
        "join state of partitions %s: standby copies up to changelog offsets %s, local state up to changelog offsets "
        "%s; read %d changelog records in %.1f s",
        sorted(ends),
        {p: copy.next_offset - 1 for p, copy in sorted(copies.items())},
        {p: state.offset for p, state in sorted(loaded.items())},
        records,
        time.monotonic() - started,
    )
    return {p: offset for p, offset in last.items() if offset >= 0}, tables
