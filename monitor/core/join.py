"""Join state: what the monitor remembers about one ``request_id``, and when to look at it again.

Per-request state is kept small on purpose (an endless stream, a 1.28-million
name batch waiting two months for its answers): a request is reduced to
:class:`RequestFacts` — which required fields were missing, who asked, keyed
hashes of the subject — the moment it arrives; the raw event is dropped.

Timers live in a :class:`TimerWheel` of one-second event-time buckets: a push
is a dict lookup and a list append, and a watermark jump of two months pops
only the buckets that exist.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import msgspec

# JoinEntry.flags bits
SLA_DONE = 1
DUPLICATE_FIRED = 2


class RequestFacts(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """All the detectors need of a request once it has been checked.

    A msgspec Struct rather than a dataclass: a million of these sit in the
    join state, and ``gc=False`` keeps them out of the cyclic collector's scans
    (they hold only strings, ints and tuples, so they can never form a cycle).
    Encoded as an array (monitor/live/entries.py): the field order is the
    changelog's format, so new fields go last, with a default.
    """

    agreement_id: str
    agency: str
    unit: str | None
    submitted_ms: int
    missing_identifying: tuple[tuple[str, str], ...]  # (field path, failed check)
    missing_legal: tuple[tuple[str, str], ...]
    subject_ref: int  # keyed hash of last|first|dob
    name_key: int  # keyed hash of last name << 32 | keyed hash of first name (0 when absent)
    statute: str | None = None  # the legal basis, for the accounting of disclosures (monitor/core/ledger.py)
    case_id: str | None = None


@dataclass(slots=True)
class DisclosureFacts:
    """A response that disclosed something, reduced to what the rules look at."""

    fingerprint: str  # distinguishes a second disclosure from a redelivery of the same message
    agreement_id: str
    responder: str
    responded_ms: int
    fields: tuple[str, ...]
    match_status: str
    match_score: float | None
    matched_on: frozenset[str]
    name_key: int | None  # of the disclosed name, when a name was disclosed
    resolved: bool = False  # rules have been run (joined, or declared orphan)
    orphaned: bool = False
    improper: bool = False  # a critical finding was made on it: disposal is owed
    disposal_checked: bool = False
    position: int = -1  # the response's position in its input, as the caller numbers it (-1: none given)


class JoinEntry(msgspec.Struct, gc=False, array_like=True):
    """Everything known about one request id; untracked by the cyclic GC like RequestFacts.

    The lists are created only when needed (most requests never see a disclosure or a disposal).
    Encoded as an array, like RequestFacts: new fields go last, with a default.
    """

    first_ms: int  # earliest event time seen for this request id; expiry counts from here
    request: RequestFacts | None = None
    answered_ms: int | None = None  # earliest responded_at of any response
    disclosures: list[DisclosureFacts] | None = None
    disposals: list[int] | None = None  # disposed_at of each disposal
    flags: int = 0
    scheduled_ms: int | None = None  # the timer bucket this entry currently sits in
    request_position: int = -1  # the request's position in its input, as the caller numbers it (-1: none given)


class TimerWheel:
    """Keys due at event times, popped in time order as the watermark passes them.

    Resolution is ``resolution_ms``: a key due at ``t`` pops once the watermark
    reaches ``t`` rounded up to the resolution. Scheduling a key twice is
    harmless; the detector re-checks what is really due when a key pops.
    """

    __slots__ = ("_buckets", "_heap", "_resolution_ms", "_size")

    def __init__(self, resolution_ms: int = 1000) -> None:
        self._resolution_ms = resolution_ms
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []
        self._size = 0

    def schedule(self, key: str, due_ms: int) -> int:
        """Schedule ``key`` at ``due_ms``; returns the bucket it went into."""
        resolution = self._resolution_ms
        bucket = -(-due_ms // resolution) * resolution
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = [key]
            heapq.heappush(self._heap, bucket)
        else:
            keys.append(key)
        self._size += 1
        return bucket

    def pop_due(self, watermark_ms: int) -> Iterator[tuple[int, str]]:
        """Yield ``(bucket, key)`` for everything due at or before the watermark, oldest first."""
        heap = self._heap
        while heap and heap[0] <= watermark_ms:
            bucket = heapq.heappop(heap)
            keys = self._buckets.pop(bucket)
            self._size -= len(keys)
            for key in keys:
                yield bucket, key

    def next_due(self) -> int | None:
        return self._heap[0] if self._heap else None

    def __len__(self) -> int:
        return self._size


#: Where join entries live: a dict in replay, a changelog-backed table in the worker.
JoinStore = MutableMapping[str, JoinEntry]
