"""Join entries on the wire: the changelog's values, the local state and the standby's copies.

msgpack arrays (the structs are ``array_like``): about a third of the bytes of field-named maps, and decoded in
about 60 % of the time, which is most of what a restart spends. Values a worker of an earlier release wrote
as maps are still read (:func:`decode`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from monitor.core.join import JoinEntry, RequestFacts

encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(JoinEntry).decode


def decode(value: bytes) -> JoinEntry:
    try:
        return _decode(value)
    except msgspec.ValidationError:
        return _from_map(msgspec.msgpack.decode(value))


def _from_map(fields: dict[str, Any]) -> JoinEntry:
    """An entry encoded as a map of field names: its fields in order, for the array decoder."""
    request = fields.get("request")
    if isinstance(request, dict):
        fields["request"] = [request[name] for name in RequestFacts.__struct_fields__ if name in request]
    return msgspec.convert([fields[name] for name in JoinEntry.__struct_fields__ if name in fields], JoinEntry)


def current(value: bytes) -> bytes:
    """``value`` in this release's encoding (an array), re-encoded if an earlier release wrote it as a map."""
    return (
        value if value[:1] and not 0x80 <= value[0] <= 0x8F and value[0] not in (0xDE, 0xDF) else encode(decode(value))
    )
