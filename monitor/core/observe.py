"""What the detection core tells an observer about the traffic it sees (for metrics), without knowing Prometheus.

The core calls these for every event, so an observer must be cheap; it is
given only bounded facts (event kinds, agreement ids, agencies, field names
and durations), never a request id or a person's data.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def event(self, kind: str, agreement_id: str) -> None:
        """A valid event of ``kind`` (request, response, disposal) was processed."""

    def disclosure(
        self, agreement_id: str, requester_agency: str | None, fields: tuple[str, ...], at_ms: int, improper: bool
    ) -> None:
        """A disclosure (response time ``at_ms``) was joined to its request (or declared an orphan: no
        requester) and judged: ``improper`` when a critical finding was made on it."""

    def late(self) -> None:
        """An event arrived behind the watermark (it is still processed)."""

    def refused(self) -> None:
        """The join state was at its cap: an event of a new request id was not joined."""

    def joined(self, agreement_id: str, latency_ms: int) -> None:
        """A request met its first answer, ``latency_ms`` apart in event time."""
