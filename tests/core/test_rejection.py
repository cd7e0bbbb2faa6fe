"""Dead-letter reasons come from the schema, not from msgspec's wording: the walk over the schema accepts
exactly what the decoder accepts, and names a reason for everything it refuses."""

from __future__ import annotations

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.core.events import Event
from monitor.core.rejection import MAX_DEPTH, invalid_event, nesting, problem, undecodable
from tests.conftest import DELETE, raw

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["", "x" * 129, "matched", "2025-06-02T10:00:00Z", "2025-06-02", "2025-06-02T10:00:00"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
_PATHS = [
    "type",
    "request_id",
    "agreement_id",
    "requester",
    "requester.agency",
    "requester.unit",
    "subject",
    "subject.name",
    "subject.name.last",
    "subject.address",
    "subject.address.zip",
    "legal_basis",
    "legal_basis.removal_order",
    "legal_basis.final_order_date",
    "legal_basis.tax_periods",
    "submitted_at",
    "responder",
    "responded_at",
    "match",
    "match.status",
    "match.score",
    "match.matched_on",
    "disclosed",
    "disposed_at",
]
_REASONS = ("missing_field:", "wrong_type:", "too_long:", "out_of_range:", "invalid_value:")
_decoder = msgspec.json.Decoder(Event)


@settings(max_examples=600)
@given(
    st.sampled_from(["request", "response", "disposal"]),
    st.lists(st.tuples(st.sampled_from(_PATHS), _json | st.just(DELETE)), min_size=1, max_size=3),
)
def test_the_schema_walk_refuses_exactly_what_the_decoder_refuses(kind: str, changes: list[tuple[str, object]]) -> None:
    try:
        document = raw(kind, **{path.replace(".", "__"): value for path, value in changes})
    except (AttributeError, TypeError):
        assume(False)  # a change below a field an earlier change made a scalar
    try:
        _decoder.decode(document)
    except msgspec.ValidationError:
        reason = invalid_event(document, Event)
        assert reason.startswith(_REASONS) or reason in {"unknown_type", "not_an_object"}, reason
        assert reason != "invalid_value:event"  # the walk found the field the decoder refused
    else:
        assert problem(msgspec.json.decode(document), msgspec.inspect.type_info(Event)) is None


def test_reasons_name_the_field_and_its_fault() -> None:
    huge = raw("response").replace(b"0.97", b"1" + b"0" * 400)
    assert invalid_event(huge, Event) == "out_of_range:match.score"
    assert invalid_event(raw("response", match__score=True), Event) == "wrong_type:match.score"
    assert invalid_event(raw("request", legal_basis__final_order_date="soon"), Event) == (
        "wrong_type:legal_basis.final_order_date"
    )
    assert invalid_event(raw("response", disclosed={"address": 1}), Event) is not None
    assert invalid_event(b'{"type": 7}', Event) == "unknown_type"
    assert invalid_event(b'"request"', Event) == "not_an_object"


def test_undecodable_input_is_told_apart_by_its_bytes() -> None:
    assert undecodable(b'{"type": "request", "x": "\xff"}') == "invalid_utf8"
    assert undecodable(b'{"type": "request", "x": "\\ud800"}') == "invalid_json"  # UTF-8 bytes, bad escape
    assert undecodable(b"[" * (MAX_DEPTH + 1)) == "too_deep"
    assert undecodable(b"[" * MAX_DEPTH) == "invalid_json"
    assert undecodable(b"{}", recursed=True) == "too_deep"


@given(st.text(alphabet='[]{}"\\ab', max_size=40))
def test_nesting_ignores_brackets_inside_strings(text: str) -> None:
    data = text.encode()
    quoted = b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    assert nesting(b"[" + quoted + b"]") == 1
    assert nesting(b"[[" + quoted + b"]]") == 2
