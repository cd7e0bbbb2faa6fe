"""Findings and the alert format (SPEC §5), plus the keyed subject hash.

``alert_id`` is a hash of what the finding is about (rule, agreement, request,
discriminator), never of when it was found, so a replay or a restarted worker
gives the same id and downstream can de-duplicate. ``subject_ref`` is a
keyed BLAKE2b (RFC 7693's MAC mode, 64-bit digest) of the normalised subject
under a secret key of at least 16 bytes: stable under one key, useless for a
dictionary attack without it (docs/security.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.core.timeutil import format_ms
from monitor.errors import UsageError

Severity = Literal["critical", "warning", "info"]
Status = Literal["firing", "resolved"]
SEVERITY_RANK: Mapping[str, int] = {"info": 0, "warning": 1, "critical": 2}

MIN_KEY_BYTES = 16
_BLAKE2B_MAX_KEY_BYTES = 64


@dataclass(frozen=True, slots=True)
class Violation:
    """What a rule reports; the detector adds identity and context to make a Finding."""

    rule: str
    severity: Severity
    summary: str
    event_time_ms: int
    discriminator: str = ""  # tells apart several findings of one rule on one request
    details: Mapping[str, Any] = field(default_factory=dict)
    status: Status = "firing"
    # Windowed rules are about an agreement or a unit, not a request: they say which themselves.
    agreement_id: str | None = None
    requester: Mapping[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    alert_id: str
    rule: str
    severity: Severity
    agreement_id: str
    request_id: str | None
    requester: Mapping[str, str | None] | None
    event_time_ms: int
    detected_stream_ms: int  # the stream's event-time clock when the finding was made
    summary: str
    subject_ref: str | None
    details: Mapping[str, Any]
    status: Status = "firing"

    def to_alert(self, detected_at_ms: int) -> dict[str, Any]:
        """The SPEC §5 alert object; ``detected_at_ms`` is the wall clock of the emitting process."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "severity": self.severity,
            "agreement_id": self.agreement_id,
            "request_id": self.request_id,
            "requester": dict(self.requester) if self.requester else None,
            "event_time": format_ms(self.event_time_ms),
            "detected_at": format_ms(detected_at_ms),
            "summary": self.summary,
            "subject_ref": self.subject_ref,
            "details": dict(self.details),
            "status": self.status,
        }


def make_alert_id(rule: str, agreement_id: str, request_id: str | None, discriminator: str) -> str:
    material = "\x1f".join((rule, agreement_id, request_id or "", discriminator)).encode()
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def make_finding(
    violation: Violation,
    agreement_id: str,
    request_id: str | None,
    requester: Mapping[str, str | None] | None,
    subject_ref: str | None,
    detected_stream_ms: int | None,
    policy_version: str | None = None,
) -> Finding:
    """A rule's violation with its identity and context; detected at ``detected_stream_ms`` of stream time
    (the newest event time seen; the violation's own time when there is none). ``policy_version`` (the
    agreement version it applied) goes into ``details``."""
    return Finding(
        alert_id=make_alert_id(violation.rule, agreement_id, request_id, violation.discriminator),
        rule=violation.rule,
        severity=violation.severity,
        agreement_id=agreement_id,
        request_id=request_id,
        requester=requester,
        event_time_ms=violation.event_time_ms,
        detected_stream_ms=violation.event_time_ms if detected_stream_ms is None else detected_stream_ms,
        summary=violation.summary,
        subject_ref=subject_ref,
        details=violation.details
        if policy_version is None
        else {**violation.details, "policy_version": policy_version},
        status=violation.status,
    )


class SubjectHasher:
    """Keyed hashes of subjects: ``subject_ref`` for alerts and compact name keys for the join."""

    __slots__ = ("_key", "_keyed")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise UsageError(f"subject hash key is {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
        if len(key) > _BLAKE2B_MAX_KEY_BYTES:  # as HMAC does with a key longer than a block: hash it first
            key = hashlib.blake2b(key).digest()
        # Keyed BLAKE2b is a MAC in one C call (HMAC-SHA256 from Python cost twice as much per request).
        # Keying costs more than hashing a short input: key once, copy the keyed state per hash.
        self._key = key
        self._keyed = hashlib.blake2b(key=key, digest_size=8)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only to a replay's own reading process (monitor.replay.read_ahead), through a pipe, never to disk.
        return SubjectHasher, (self._key,)

    def ref(self, *parts: str) -> int:
        """A 64-bit keyed hash (keyed BLAKE2b) of normalised parts."""
        state = self._keyed.copy()
        state.update("\x1f".join(parts).encode())
        return int.from_bytes(state.digest(), "big")


def format_ref(ref: int | None) -> str | None:
    return None if ref is None else f"{ref:016x}"
