"""Nasty inputs, each with the dead-letter reason the monitor must give it (None: a valid event).

Shared by the parser tests (tests/core/test_hostile_input.py) and the worker test that sends them through Kafka.
"""

from __future__ import annotations

from tests.conftest import raw

TEN_MB = 10 * 1024 * 1024

#: name -> (payload, expected reason or None when the event is valid)
CORPUS: dict[str, tuple[bytes, str | None]] = {
    "not json": (b"{not json", "invalid_json"),
    "empty": (b"", "invalid_json"),
    "only whitespace": (b"   \t ", "invalid_json"),
    "invalid utf-8 in a string": (raw("request").replace(b'"Garcia"', b'"Garc\xff\xfea"'), "invalid_utf8"),
    "lone surrogate escape": (raw("request").replace(b'"Garcia"', b'"Garc\\ud800a"'), "invalid_json"),
    "nul bytes": (b"\x00" * 64, "invalid_json"),
    "NaN": (raw("response").replace(b"0.97", b"NaN"), "invalid_json"),
    "Infinity": (raw("response").replace(b"0.97", b"Infinity"), "invalid_json"),
    "huge exponent": (raw("response").replace(b"0.97", b"1e999"), "out_of_range:match.score"),
    "deep nesting": (b'{"type":"request","x":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "too_deep"),
    "deep nesting in a known field": (
        raw("request", subject__address=None).replace(
            b'"address":null', b'"address":' + b'{"a":' * 3_000 + b"1" + b"}" * 3_000
        ),
        "too_deep",
    ),
    "huge string, small enough": (raw("request", subject__name__first="x" * 60_000), None),
    "huge string": (raw("request", subject__name__first="x" * 70_000), "oversized"),
    "10 MB message": (b'{"type":"request","pad":"' + b"x" * TEN_MB + b'"}', "oversized"),
    "number where a string belongs": (raw("request", agreement_id=7), "wrong_type:agreement_id"),
    "string where an object belongs": (raw("request", subject="Ana Garcia"), "wrong_type:subject"),
    "array of events": (b"[" + raw("request") + b"]", "not_an_object"),
    "bare string": (b'"request"', "not_an_object"),
    "type is a number": (raw("request", type=1), "unknown_type"),
    "year 9999": (raw("request", submitted_at="9999-12-31T23:59:59Z"), "out_of_range:submitted_at"),
    "year 1969": (raw("response", responded_at="1969-12-31T23:59:59Z"), "out_of_range:responded_at"),
    "year 0001": (raw("disposal", disposed_at="0001-01-01T00:00:00Z"), "out_of_range:disposed_at"),
    "timestamp without offset": (raw("request", submitted_at="2025-06-02T10:00:00"), "wrong_type:submitted_at"),
    "timestamp as a number": (raw("request", submitted_at=1748858400), "wrong_type:submitted_at"),
    "request id too long": (raw("request", request_id="r" * 10_000), "too_long:request_id"),
    "request id empty": (raw("request", request_id=""), "missing_field:request_id"),
    "match status unknown": (raw("response", match__status="probably"), "invalid_value:match.status"),
    "a lone invalid byte": (b"\xff", "invalid_utf8"),
    # Duplicate keys: the last one wins (as in orjson and most parsers); never a crash.
    "duplicate keys": (raw("request").replace(b'{"type":"request"', b'{"type":"request","request_id":"first"'), None),
}
