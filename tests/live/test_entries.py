"""Join entries on the wire: arrays both ways, and entries an earlier release wrote as maps still read."""

from __future__ import annotations

import msgspec

from monitor.core.join import DisclosureFacts, JoinEntry, RequestFacts
from monitor.live import entries

REQUEST = RequestFacts(
    "irs-ice-2025", "ICE", None, 10, (("subject.address.street", "placeholder"),), (), 7, 9, "8 USC", "A1"
)
DISCLOSURE = DisclosureFacts("f1", "irs-ice-2025", "IRS", 20, ("address",), "matched", 0.9, frozenset({"name"}), None)
ENTRY = JoinEntry(5, REQUEST, 20, [DISCLOSURE], [30], 1, 40, 3)


def test_an_entry_goes_over_the_wire_as_an_array_and_comes_back_equal() -> None:
    value = entries.encode(ENTRY)
    assert isinstance(msgspec.msgpack.decode(value), list)
    assert entries.decode(value) == ENTRY
    assert entries.current(value) is value


def test_an_entry_written_as_a_map_is_read_and_rewritten_as_an_array() -> None:
    fields = msgspec.structs.asdict(ENTRY)
    fields["request"] = msgspec.structs.asdict(REQUEST)
    old = msgspec.msgpack.encode(fields)  # how an earlier release wrote it
    assert isinstance(msgspec.msgpack.decode(old), dict)
    assert entries.decode(old) == ENTRY
    assert entries.current(old) == entries.encode(ENTRY)
    bare = msgspec.msgpack.encode({"first_ms": 5, "request": None, "answered_ms": None, "disclosures": None,
                                   "disposals": None, "flags": 0, "scheduled_ms": None, "request_position": -1})  # fmt: skip
    assert entries.decode(bare) == JoinEntry(5)
