"""Windowed findings survive a crash at any point of a checkpoint exactly: the worker's pipeline, with its
writes kept in memory instead of on a broker, is killed at a checkpoint step, started again from what was
durable (committed offsets, the changelog, the window stage's snapshot, the facts topic) and handles the
input again in another interleaving of its three topics. Its windowed alerts, observed values included,
must equal a replay's. The broker tests (test_faults.py, bench/chaos.py) do the same with real processes."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor.core.detector import Detector
from monitor.core.events import Disposal, Event, Request, Response, event_time_ms
from monitor.core.findings import SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.policy import parse_policy
from monitor.core.timeutil import format_ms
from monitor.live.kafka import KafkaSettings
from monitor.live.pipeline import Pipeline, Writers
from monitor.live.relay import StageSnapshot
from monitor.live.settings import WorkerSettings
from monitor.live.topic_writer import TopicWriter
from monitor.outputs.alerts import FindingSender
from monitor.outputs.metrics import Metrics
from tests.conftest import TEST_KEY, disposal
from tests.core.rules.test_windowed_rules import ALL_WINDOWED, ALL_WINDOWED_UNTIL, POLICY
from tests.live.conftest import windowed_outcome

LATENESS_MS = 10 * 60_000
KAFKA = KafkaSettings(topic_prefix="t", group="g")
TOPICS = {"request": "t.requests", "response": "t.responses", "disposal": "t.disposals"}
_KIND = {Request: "request", Response: "response", Disposal: "disposal"}
# Steps of a checkpoint, in order; a crash at step i leaves the writes of the steps before it.
STEPS = ("facts", "windows", "changelog", "commit")


class _Crash(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class _Durable:
    """What a crash leaves: the topics' records and the committed offsets."""

    inputs: dict[str, list[bytes]]
    closing: list[bytes]  # one event to each topic once the rest is read: every clock reaches the closing time
    committed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPICS.values(), 0))
    facts: list[bytes] = field(default_factory=list)
    facts_committed: int = 0
    windows: list[bytes] = field(default_factory=list)
    changelog: dict[bytes, bytes | None] = field(default_factory=dict)
    alerts: list[bytes] = field(default_factory=list)
    crash_at: str | None = None  # the checkpoint step that fails next, once armed


class _Writer(TopicWriter):
    """A topic kept in memory; the armed checkpoint step fails instead of writing."""

    def __init__(self, durable: _Durable, name: str) -> None:
        super().__init__(lambda: None, name)
        self._durable = durable

    async def write(self, records: Any) -> list[asyncio.Future[Any]]:
        return await self.write_to((0, key, value) for key, value in records)

    async def write_to(self, records: Any) -> list[asyncio.Future[Any]]:
        durable, records = self._durable, list(records)
        if durable.crash_at is not None and STEPS.index(self.topic) >= STEPS.index(durable.crash_at):
            raise _Crash
        if self.topic == "facts":
            durable.facts += [value for _, _, value in records]
        elif self.topic == "windows":
            durable.windows += [value for _, _, value in records]
        elif self.topic == "changelog":
            durable.changelog.update((key, value) for _, key, value in records)
        else:
            durable.alerts += [value for _, _, value in records]
        return []


def _pipeline(durable: _Durable) -> Pipeline:
    policy = parse_policy(POLICY, "w.toml")
    metrics = Metrics(CollectorRegistry(), policy)
    writers = Writers(*(_Writer(durable, name) for name in ("alerts", "deadletter", "changelog", "facts", "windows")))
    settings = WorkerSettings(KAFKA, partitions=1, allowed_lateness_ms=LATENESS_MS, idle_ms=None)
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    return Pipeline(settings, policy, SubjectHasher(TEST_KEY), writers, FindingSender(now_ms), metrics, now_ms, print)


async def _start(durable: _Durable) -> Pipeline:
    """A worker started on what is durable: join state from the changelog, the stage from its snapshot."""
    pipeline = _pipeline(durable)
    decode = msgspec.msgpack.Decoder(JoinEntry).decode
    recovered = {key.decode(): decode(value) for key, value in durable.changelog.items() if value is not None}
    await pipeline.take_assignment({0}, False, {0: recovered})
    pipeline.stage.owned = True
    if durable.windows:
        pipeline.stage.restore(durable.windows[-1])
    return pipeline


async def _run(durable: _Durable, rng: random.Random, batch: int, every: int, crash: tuple[int, str] | None) -> bool:
    """One worker's life: batches from the three topics in a random order, a checkpoint every ``every``
    batches (its facts then read back by the stage, as from the facts topic), a crash at ``crash`` (a
    checkpoint's number and step); False if it crashed. Without one, the closing events are sent once the
    rest is read."""
    pipeline = await _start(durable)
    position, facts_read = dict(durable.committed), durable.facts_committed
    checkpoints = batches = 0
    while True:
        left = [topic for topic, records in durable.inputs.items() if position[topic] < len(records)]
        if not left and crash is None and durable.closing:
            for topic, value in zip(TOPICS.values(), durable.closing, strict=True):
                durable.inputs[topic].append(value)
            durable.closing = []
            continue
        if left:
            topic = rng.choice(left)
            start = position[topic]
            values = durable.inputs[topic][start : start + rng.randint(1, batch)]
            await pipeline.handle([_Message(topic, 0, start + i, None, v) for i, v in enumerate(values)])
            position[topic] += len(values)
            batches += 1
            if batches % every and left:
                continue
        checkpoints += 1
        if crash is not None and checkpoints == crash[0]:
            durable.crash_at = crash[1]
        try:
            await pipeline.checkpoint()
        except _Crash:
            return False
        finally:
            durable.crash_at = None
        if crash is not None and checkpoints == crash[0] and crash[1] == "commit":
            return False
        durable.committed, durable.facts_committed = dict(position), facts_read
        new = durable.facts[facts_read:]
        await pipeline.handle([_Message(KAFKA.facts_topic, 0, facts_read + i, None, v) for i, v in enumerate(new)])
        facts_read += len(new)
        if not left and not new:
            return True


def _events() -> list[Event]:
    """The windowed rules' traffic with a disposal every 500 events (so the disposals topic's clock moves,
    as the other two's) and, at the end, one on each topic that takes every watermark to the closing time."""
    events: list[Event] = []
    for i, event in enumerate(ALL_WINDOWED):
        events.append(event)
        if i % 500 == 499:
            events.append(disposal(request_id=f"tick-{i}", disposed_at=format_ms(event_time_ms(event))))
    closing = format_ms(ALL_WINDOWED_UNTIL + LATENESS_MS)
    return events + [disposal(request_id=f"close-{kind}", disposed_at=closing) for kind in TOPICS]


EVENTS = _events()


def _durable() -> _Durable:
    """The events on their topics; the closing ones apart, one for each topic (the worker takes any type
    from any of them)."""
    inputs: dict[str, list[bytes]] = {topic: [] for topic in TOPICS.values()}
    for event in EVENTS[:-3]:
        inputs[TOPICS[_KIND[type(event)]]].append(msgspec.json.encode(event))
    return _Durable(inputs, [msgspec.json.encode(event) for event in EVENTS[-3:]])


def _replayed() -> tuple[set[tuple[str, str, str, object]], Any]:
    """A replay's windowed findings, and its window stage's counts at the end."""
    detector = Detector(parse_policy(POLICY, "w.toml"), SubjectHasher(TEST_KEY), allowed_lateness_ms=LATENESS_MS)
    found = [f for event in EVENTS for f in detector.process(event)]
    sender = FindingSender(lambda: 0)
    return windowed_outcome(orjson.loads(sender.encode(f)) for f in found), _counts(detector.windows.snapshot())


def _counts(snapshot: bytes) -> Any:
    """The windowed rules' state in a stage snapshot: every count and baseline."""
    return msgspec.msgpack.decode(snapshot)["rules"]


EXPECTED, EXPECTED_COUNTS = _replayed()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), checkpoint=st.integers(1, 40), step=st.sampled_from(STEPS))
def test_windowed_findings_after_a_crash_at_any_checkpoint_step_equal_a_replay(
    seed: int, checkpoint: int, step: str
) -> None:
    rng = random.Random(seed)
    durable = _durable()
    batch, every = rng.choice((50, 200, 800)), rng.choice((1, 3, 8))
    asyncio.run(_run(durable, rng, batch, every, (checkpoint, step)))  # a crash, unless it ends first
    assert asyncio.run(_run(durable, rng, batch, every, None))  # again, in another interleaving, to the end
    alerts = [orjson.loads(raw) for raw in durable.alerts]
    assert windowed_outcome(alerts) == EXPECTED
    saved = msgspec.msgpack.decode(durable.windows[-1], type=StageSnapshot)
    assert _counts(saved.stage) == EXPECTED_COUNTS  # each fact counted once, none lost
