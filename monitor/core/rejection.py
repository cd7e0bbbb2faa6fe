"""Why the event decoder refused some bytes: the dead-letter reason, worked out from the bytes and the schema.

msgspec tells *that* an event is invalid. The reason the monitor reports (docs/policy.md, "Events, dead letters,
alerts") is the monitor's own contract, so it is derived here from the input and from the event schema as
``msgspec.inspect`` describes it, never from the wording of a library's exception, which changes between
releases. Only refused input comes here, so none of this is on the hot path.

Reasons, in the order they are decided:

- ``invalid_utf8``: the bytes are not UTF-8 (SPEC §2: events are UTF-8 JSON);
- ``too_deep``: arrays and objects nest deeper than :data:`MAX_DEPTH`;
- ``invalid_json``: not one JSON value;
- ``not_an_object``, ``missing_field:type``, ``unknown_type``: not an event at all;
- ``missing_field:<path>``, ``wrong_type:<path>``, ``too_long:<path>``, ``out_of_range:<path>``,
  ``invalid_value:<path>``: the first field, in schema order, that breaks the schema.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import msgspec
from msgspec import inspect

#: Nesting of arrays and objects beyond which input is ``too_deep``. An event nests four levels; a parser's
#: recursion gives out in the thousands.
MAX_DEPTH = 1000

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LEAF_TYPES: dict[type, type] = {inspect.DateTimeType: dt.datetime, inspect.DateType: dt.date}
# Reading a number never fails: out-of-range floats become inf here and are judged against the schema.
_untyped = msgspec.json.Decoder(float_hook=float)


def undecodable(raw: bytes | bytearray | memoryview | str, recursed: bool = False) -> str:
    """The reason for input that is not one JSON value (``recursed``: the parser ran out of stack)."""
    data = _as_bytes(raw)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if recursed or nesting(data) > MAX_DEPTH:
        return "too_deep"
    return "invalid_json"


def _as_bytes(raw: bytes | bytearray | memoryview | str) -> bytes:
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)


def nesting(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data``, brackets inside strings not counted."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def invalid_event(raw: bytes | bytearray | memoryview | str, schema: Any) -> str:
    """The reason for JSON that does not fit ``schema`` (the union of the event types)."""
    data = _as_bytes(raw)
    if nesting(data) > MAX_DEPTH:
        return "too_deep"
    try:
        value = _untyped.decode(data)
    except RecursionError:
        return "too_deep"
    except (msgspec.DecodeError, UnicodeDecodeError):  # the typed decoder skipped what this one cannot read
        return undecodable(data)
    return problem(value, inspect.type_info(schema)) or "invalid_value:event"


def problem(value: Any, info: inspect.Type, path: str = "") -> str | None:
    """The first way ``value`` breaks the type ``info``, as a dead-letter reason; None if it fits."""
    if isinstance(info, inspect.UnionType):
        return _union(value, info, path)
    if value is None:
        return f"missing_field:{path}"
    if isinstance(info, inspect.StructType):
        return _struct(value, info, path)
    if isinstance(info, inspect.StrType):
        return _string(value, info, path)
    if isinstance(info, inspect.FloatType):
        return _float(value, info, path)
    if isinstance(info, inspect.BoolType):
        return None if isinstance(value, bool) else f"wrong_type:{path}"
    if isinstance(info, inspect.LiteralType):
        if not isinstance(value, str):
            return f"wrong_type:{path}"
        return None if value in info.values else f"invalid_value:{path}"
    if isinstance(info, inspect.ListType):
        if not isinstance(value, list):
            return f"wrong_type:{path}"
        return next((p for i, item in enumerate(value) if (p := problem(item, info.item_type, f"{path}[{i}]"))), None)
    if isinstance(info, inspect.DictType):
        if not isinstance(value, dict):
            return f"wrong_type:{path}"
        return next((p for k, item in value.items() if (p := problem(item, info.value_type, _at(path, k)))), None)
    if type(info) in _LEAF_TYPES:
        try:
            msgspec.convert(value, _LEAF_TYPES[type(info)])
        except msgspec.ValidationError:
            return f"wrong_type:{path}"
    return None  # RawType: any value


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _union(value: Any, info: inspect.UnionType, path: str) -> str | None:
    if value is None and any(isinstance(t, inspect.NoneType) for t in info.types):
        return None
    structs = [t for t in info.types if isinstance(t, inspect.StructType)]
    if structs and structs[0].tag_field is not None:
        return _tagged(value, structs, path)
    (only,) = (t for t in info.types if not isinstance(t, inspect.NoneType))
    return problem(value, only, path)


def _tagged(value: Any, structs: list[inspect.StructType], path: str) -> str | None:
    if not isinstance(value, dict):
        return f"wrong_type:{path}" if path else "not_an_object"
    tag_field = structs[0].tag_field
    assert tag_field is not None
    if tag_field not in value:
        return f"missing_field:{_at(path, tag_field)}"
    chosen = next((s for s in structs if s.tag == value[tag_field]), None)
    return "unknown_type" if chosen is None else _struct(value, chosen, path)


def _struct(value: Any, info: inspect.StructType, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"wrong_type:{path}" if path else "not_an_object"
    for field in info.fields:
        where = _at(path, field.encode_name)
        if field.encode_name in value:
            found = problem(value[field.encode_name], field.type, where)
            if found:
                return found
        elif field.required:
            return f"missing_field:{where}"
    return None


def _string(value: Any, info: inspect.StrType, path: str) -> str | None:
    if not isinstance(value, str):
        return f"wrong_type:{path}"
    if info.min_length is not None and len(value) < info.min_length:
        return f"missing_field:{path}"  # SPEC §2: empty strings count as missing
    if info.max_length is not None and len(value) > info.max_length:
        return f"too_long:{path}"
    return None


def _float(value: Any, info: inspect.FloatType, path: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"wrong_type:{path}"
    number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
    inside = math.isfinite(number) and (info.ge is None or number >= info.ge) and (info.le is None or number <= info.le)
    inside = inside and (info.gt is None or number > info.gt) and (info.lt is None or number < info.lt)
    return None if inside else f"out_of_range:{path}"
