"""Event schemas (SPEC §2) and the one decoder that turns bytes into events or dead letters.

Events are msgspec ``Struct`` s: typed, slotted, and decoded straight from JSON
bytes with validation in one pass (``bench/parse_bench.py`` measures this
against ``orjson.loads`` plus hand validation). Anything that is not a valid
event becomes an :class:`Invalid` with a machine-readable ``reason``; nothing
here raises on bad input.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from monitor.core.rejection import invalid_event, undecodable
from monitor.core.timeutil import to_ms

#: Bytes above which an event is refused unparsed (``oversized``).
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
#: How far ahead of the wall clock an event time may be (clock skew). One event dated 9999 would otherwise
#: drag the watermark to 9999 and fire every timer at once; the shells pass ``now + this`` as ``not_after_ms``.
FUTURE_TOLERANCE_MS = 24 * 3600 * 1000

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Score = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Name(msgspec.Struct, frozen=True, gc=False):
    last: NonEmpty
    first: str | None = None


class Address(msgspec.Struct, frozen=True, gc=False):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None


class Subject(msgspec.Struct, frozen=True, gc=False):
    name: Name
    address: Address | None = None
    dob: str | None = None
    tin: str | None = None


class Requester(msgspec.Struct, frozen=True, gc=False):
    agency: NonEmpty
    unit: str | None = None
    user: str | None = None
    signatory: str | None = None


class LegalBasis(msgspec.Struct, frozen=True, gc=False):
    statute: str | None = None
    case_id: str | None = None
    removal_order: bool | None = None
    criminal_investigation: bool | None = None
    final_order_date: dt.date | None = None
    tax_periods: list[str] | None = None
    reason: str | None = None


class Request(msgspec.Struct, frozen=True, gc=False, tag="request", tag_field="type"):
    request_id: RequestId
    agreement_id: NonEmpty
    requester: Requester
    submitted_at: dt.datetime
    subject: Subject
    batch_id: str | None = None
    legal_basis: LegalBasis | None = None

    @property
    def event_time(self) -> dt.datetime:
        return self.submitted_at


class Responder(msgspec.Struct, frozen=True, gc=False):
    agency: NonEmpty
    system: str | None = None
    operator: str | None = None


class Match(msgspec.Struct, frozen=True, gc=False):
    status: Literal["matched", "no_match", "ambiguous"]
    score: Score | None = None
    matched_on: list[str] | None = None


class Response(msgspec.Struct, frozen=True, gc=False, tag="response", tag_field="type"):
    request_id: RequestId
    agreement_id: NonEmpty
    responder: Responder
    responded_at: dt.datetime
    match: Match
    # Values stay raw JSON: the monitor needs the field names, and only the
    # name's value (for subject_mismatch); personal data is never decoded needlessly.
    disclosed: dict[str, msgspec.Raw] | None = None

    @property
    def event_time(self) -> dt.datetime:
        return self.responded_at


class Disposal(msgspec.Struct, frozen=True, gc=False, tag="disposal", tag_field="type"):
    request_id: RequestId
    agreement_id: NonEmpty
    disposed_at: dt.datetime
    confirmed_by: str | None = None

    @property
    def event_time(self) -> dt.datetime:
        return self.disposed_at


Event = Request | Response | Disposal

# Values of a disclosed field that mean "nothing was disclosed".
_EMPTY_RAW = frozenset({b'""', b"null", b"{}", b"[]"})


def disclosed_fields(response: Response) -> tuple[str, ...]:
    """Names of the fields the response actually disclosed (empty/null values do not count), sorted."""
    disclosed = response.disclosed
    if not disclosed:
        return ()
    return tuple(sorted(k for k, v in disclosed.items() if bytes(v).strip() not in _EMPTY_RAW))


@dataclass(frozen=True, slots=True)
class Invalid:
    """An input that is not a valid event; becomes a dead-letter record."""

    reason: str
    position: str = ""


_decoder = msgspec.json.Decoder(Event)
_TIME_FIELD = {Request: "submitted_at", Response: "responded_at", Disposal: "disposed_at"}


def decode_timed(
    raw: bytes | bytearray | memoryview | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES, not_after_ms: int | None = None
) -> tuple[int, Event] | Invalid:
    """Decode one event with its event time in epoch milliseconds; never raises. Invalid input gives
    :class:`Invalid` with a reason.

    Event times before 1970, or after ``not_after_ms`` when given, are ``out_of_range``."""
    if len(raw) > max_bytes:
        return Invalid("oversized")
    try:
        event: Event = _decoder.decode(raw)
    except msgspec.ValidationError:
        return Invalid(invalid_event(raw, Event))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return Invalid(undecodable(raw))
    except RecursionError:
        return Invalid(undecodable(raw, recursed=True))
    moment = event.event_time
    if moment.tzinfo is None:  # RFC 3339 demands an offset; msgspec accepts naive times
        return Invalid("wrong_type:" + _TIME_FIELD[type(event)])
    event_ms = to_ms(moment)
    if event_ms < 0 or (not_after_ms is not None and event_ms > not_after_ms):
        return Invalid("out_of_range:" + _TIME_FIELD[type(event)])  # before 1970, or in the future
    return event_ms, event


def decode(
    raw: bytes | bytearray | memoryview | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES, not_after_ms: int | None = None
) -> Event | Invalid:
    """:func:`decode_timed` without the time."""
    decoded = decode_timed(raw, max_bytes, not_after_ms)
    return decoded if isinstance(decoded, Invalid) else decoded[1]


#: Decodes a line :func:`decode_timed` has accepted already (in the reading process of
#: :mod:`monitor.replay.read_ahead`), without repeating the time checks: the same decoder, so the same event.
decode_accepted = _decoder.decode


def event_time_ms(event: Event) -> int:
    """The event's own time (submitted/responded/disposed) as epoch milliseconds."""
    return to_ms(event.event_time)


encode = msgspec.json.Encoder().encode
