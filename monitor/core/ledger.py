"""The accounting of disclosures: one entry for every disclosing response, made when the join judges it.

IRC §6103(p)(3)(A) and the Privacy Act (5 U.S.C. §552a(c)) ask for a record of each disclosure: its date,
nature and purpose, and the recipient. An :class:`AccountingEntry` holds exactly that and nothing personal:
the event time, the agreement and request id, the recipient agency and unit, the names of the fields
disclosed (never their values), the legal basis given with the request (statute, case id), the keyed
``subject_ref`` (so a person's accounting can be found without storing the name), and the verdict:
``proper``, or the rule ids, severities and ``alert_id`` s of the findings made on it.

The entry's id is a hash of its content, so a replay and the live worker, which judge the same disclosure
the same way, make the same entry with the same id, and a response delivered twice adds nothing. The bytes
hashed into the ledger's Merkle tree (:mod:`monitor.core.merkle`) are :func:`record_bytes`: the entry with
its position in the ledger.
"""

from __future__ import annotations

import hashlib

import msgspec

from monitor.core.findings import Finding


class Judged(msgspec.Struct, frozen=True, array_like=True):
    """A finding made on the disclosure."""

    rule: str
    severity: str
    alert_id: str


class AccountingEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One disclosure, as the accounting records it."""

    event_time_ms: int
    agreement_id: str
    request_id: str
    recipient_agency: str | None  # None for an orphan: no request says who asked
    recipient_unit: str | None
    fields: tuple[str, ...]
    statute: str | None
    case_id: str | None
    subject_ref: str | None
    findings: tuple[Judged, ...]  # empty: a proper disclosure

    @property
    def verdict(self) -> str:
        """``proper`` (no finding), ``improper`` (a critical finding, as the alerts and the replay summary
        count it) or ``questioned`` (warnings only)."""
        if not self.findings:
            return "proper"
        return "improper" if any(f.severity == "critical" for f in self.findings) else "questioned"

    @property
    def entry_id(self) -> str:
        """A hash of the content: the same disclosure judged the same way has the same id anywhere."""
        return hashlib.sha256(_CANONICAL.encode(self)).hexdigest()[:32]


class LedgerRecord(msgspec.Struct, frozen=True):
    """An entry at its place in the ledger: what a leaf of the tree hashes."""

    seq: int
    id: str
    entry: AccountingEntry


_CANONICAL = msgspec.json.Encoder(order="sorted")
_RECORD = msgspec.json.Decoder(LedgerRecord)


def entry_of(
    findings: list[Finding],
    *,
    event_time_ms: int,
    agreement_id: str,
    request_id: str,
    agency: str | None,
    unit: str | None,
    fields: tuple[str, ...],
    statute: str | None,
    case_id: str | None,
    subject_ref: str | None,
) -> AccountingEntry:
    """The entry of a disclosure judged with ``findings`` (those made on it, in order)."""
    return AccountingEntry(
        event_time_ms=event_time_ms,
        agreement_id=agreement_id,
        request_id=request_id,
        recipient_agency=agency,
        recipient_unit=unit,
        fields=tuple(sorted(fields)),
        statute=statute,
        case_id=case_id,
        subject_ref=subject_ref,
        findings=tuple(Judged(f.rule, f.severity, f.alert_id) for f in findings if f.status == "firing"),
    )


def record_bytes(seq: int, entry_id: str, entry: AccountingEntry) -> bytes:
    """The ledger's line for ``entry`` (whose :attr:`~AccountingEntry.entry_id` the caller has) at position
    ``seq`` (canonical JSON, keys sorted, no newline)."""
    return _CANONICAL.encode(LedgerRecord(seq, entry_id, entry))


def read_record(line: bytes) -> LedgerRecord:
    """A ledger line back (:class:`msgspec.ValidationError` or :class:`msgspec.DecodeError` if it is not one)."""
    return _RECORD.decode(line)
