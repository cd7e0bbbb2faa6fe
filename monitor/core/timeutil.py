"""Event-time helpers: everything internal is integer milliseconds since the Unix epoch (UTC)."""

from __future__ import annotations

import datetime as dt
import re

MS_PER_SECOND = 1000
MS_PER_DAY = 86_400_000

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": MS_PER_DAY, "w": 7 * MS_PER_DAY}


#: The longest duration accepted: longer is a typo, and event times plus durations must stay 64-bit integers
#: in the worker's stored state.
MAX_DURATION_MS = 3650 * MS_PER_DAY


def parse_duration_ms(text: str) -> int:
    """Parse ``"72h"``, ``"14d"``, ``"30m"``, ``"500ms"`` into milliseconds; ValueError otherwise."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected e.g. '30s', '15m', '72h', '14d', '2w')")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms > MAX_DURATION_MS:
        raise ValueError(f"too long: {text!r} (at most {MAX_DURATION_MS // MS_PER_DAY}d, ten years)")
    return ms


def to_ms(moment: dt.datetime) -> int:
    """An aware datetime as epoch milliseconds."""
    return int(moment.timestamp() * 1000)


def date_start_ms(day: dt.date) -> int:
    """Midnight UTC at the start of ``day``."""
    return to_ms(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


def format_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC (``2025-06-02T14:03:11.250Z``; no fraction when whole)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    if ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp with an offset (or a bare date, taken as UTC midnight)."""
    try:
        if len(text) == 10:
            return date_start_ms(dt.date.fromisoformat(text))
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r} (add 'Z' or '+00:00')")
    return to_ms(moment)
