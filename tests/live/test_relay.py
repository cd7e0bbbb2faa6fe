"""The window-facts relay's record format: typed facts round-trip, each input position is counted once, and a
record of another version or garbage is skipped, not counted."""

from __future__ import annotations

import logging

import msgspec
import pytest

from monitor.core.findings import Finding
from monitor.core.policy import parse_policy
from monitor.core.windows.facts import DisclosureFact, Fact, JoinedFact, RequestFact, ResponseFact
from monitor.live.kafka import KafkaSettings
from monitor.live.relay import FACTS_VERSION, FactsRecord, StageHost, StageSnapshot
from monitor.live.topic_writer import TopicWriter

POLICY = """
[[agreement]]
id = "a1"
requesters = ["ICE"]
disclosers = ["IRS"]
effective_from = 2025-01-01
max_batch_size = 3
max_disclosures_per_day = 2
"""


def _host() -> StageHost:
    host = StageHost(parse_policy(POLICY, "w.toml"), KafkaSettings(), TopicWriter(lambda: None, "unused"), 1)
    host.owned = True
    return host


def _record(facts: list[tuple[str, int, Fact]], version: int = FACTS_VERSION) -> bytes:
    return msgspec.msgpack.encode(FactsRecord(version, [("p:0", 10**13)], facts))


def test_typed_facts_cross_the_topic_unchanged() -> None:
    facts: list[tuple[str, int, Fact]] = [
        ("p:0", 1, RequestFact("a1", 1_000, "batch-1", "ICE", "ERO")),
        ("p:0", 2, ResponseFact("a1", 2_000, True)),
        ("p:0", 2, DisclosureFact("a1", 2_000)),
        ("p:0", 3, JoinedFact("a1", 2_000, None)),
    ]
    decoded = msgspec.msgpack.decode(_record(facts), type=FactsRecord)
    assert decoded.version == FACTS_VERSION and decoded.facts == facts
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(facts[0][2])) == [
        "request",
        "a1",
        1_000,
        "batch-1",
        "ICE",
        "ERO",
    ]


def test_a_position_is_counted_once_and_foreign_records_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    host = _host()
    facts: list[tuple[str, int, Fact]] = [
        ("p:0", offset, RequestFact("a1", 1_000 + offset, "b", "ICE", "ERO")) for offset in range(5)
    ]
    host.apply(_record(facts))
    assert host.counted == {"p:0": 4}
    snapshot = host.stage.snapshot()
    host.apply(_record(facts))  # the same batch handled again after a crash
    assert host.stage.snapshot() == snapshot
    with caplog.at_level(logging.ERROR):
        assert (
            host.apply(_record([("p:0", 9, RequestFact("a1", 9, "b", "ICE", None))], version=FACTS_VERSION + 1)) == []
        )
        assert host.apply(b"\x93garbage") == []
    assert host.counted == {"p:0": 4} and host.stage.snapshot() == snapshot
    assert "version" in caplog.text and "unreadable" in caplog.text


def _handled(record: list[tuple[str, int, Fact]], requests: int, responses: int) -> bytes:
    handled = [("disclosure.requests:0", requests), ("disclosure.responses:0", responses)]
    return msgspec.msgpack.encode(FactsRecord(FACTS_VERSION, [], record, handled))


def test_a_joined_disclosure_is_counted_once_whichever_of_its_events_completes_it() -> None:
    """A crashed worker's record had handled requests to 52 and responses to 30; its successor, from older
    offsets, responses to 84 and requests to 1 so far. A request at 13 joined to the response at 42 now is
    new (no record had both), one joined to the response at 20 is not (the first record had both)."""
    host = _host()
    applied: list[Fact] = []
    stage_apply = host.stage.apply

    def counting(fact: Fact) -> list[Finding]:
        applied.append(fact)
        return stage_apply(fact)

    host.stage.apply = counting  # type: ignore[method-assign]
    host.apply(_handled([], 52, 30))
    host.apply(_handled([], 1, 84))
    assert host.pairs == {"0": [(52, 30), (1, 84)]}
    new, counted = JoinedFact("a1", 2_000, "U1", paired=42), JoinedFact("a1", 3_000, "U1", paired=20)
    host.apply(_handled([("disclosure.requests:0", 13, new), ("disclosure.requests:0", 13, counted)], 13, 84))
    assert applied == [new]
    host.apply(_handled([("disclosure.responses:0", 42, JoinedFact("a1", 2_000, "U1", paired=13))], 13, 84))
    assert applied == [new]  # the same pair again, completed by its response this time
    assert host.pairs == {"0": [(52, 30), (13, 84)]}  # (1, 84) is covered by (13, 84)
    again = _host()
    again.restore(msgspec.msgpack.encode(StageSnapshot(host.counted, host.marks, host.stage.snapshot(), host.pairs)))
    assert again.pairs == host.pairs and again.counted == host.counted
