"""The window stage's own ceiling: how many window facts per second the one stage of a group can count, and so
how many workers it can serve.

    .venv/bin/python bench/stage_bench.py [--requests 50000] [--worker-rate 24000] [--repeat 3]

Every worker of a group sends its window facts to one stage, on the worker that has the one partition of
``<group>-window-facts`` (monitor/live/relay.py). This simulates a scenario with every windowed rule on,
makes its facts as a worker's join does (each with its input offset, joined disclosures with their pair's),
packs them into facts records of a quarter second of a worker's traffic at ``--worker-rate`` events/s
(its checkpoint interval), and times the stage's side alone: decoding each record, skipping what was
counted, counting the rest and moving the stage's watermark (``StageHost.apply``). It prints facts/s,
facts per input event, and the number of workers at ``--worker-rate`` one stage keeps up with (the stage
shares its worker's event loop with that worker's own partitions, so one fewer than the ratio).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import msgspec  # noqa: E402
import orjson  # noqa: E402

from monitor.config import load_policy  # noqa: E402
from monitor.core.digests import Reducer  # noqa: E402
from monitor.core.events import decode_timed  # noqa: E402
from monitor.core.findings import Finding, SubjectHasher  # noqa: E402
from monitor.core.joiner import Joiner  # noqa: E402
from monitor.core.windows.facts import Fact  # noqa: E402
from monitor.live.kafka import KafkaSettings  # noqa: E402
from monitor.live.relay import FACTS_VERSION, FactsRecord, StageHost  # noqa: E402
from monitor.live.topic_writer import TopicWriter  # noqa: E402

KAFKA = KafkaSettings(topic_prefix="bench", group="bench")
TOPIC = {"request": "bench.requests", "response": "bench.responses", "disposal": "bench.disposals"}


def records(directory: Path, per_record: int) -> tuple[list[bytes], int, int]:
    """The scenario's facts as facts records of ``per_record`` events each; (records, facts, events)."""
    policy = load_policy(str(directory / "policy.toml"))
    reducer, joiner = Reducer(policy, SubjectHasher(b"bench-key-0123456789abcdef")), Joiner(policy)
    encode = msgspec.msgpack.Encoder().encode
    out: list[bytes] = []
    facts: list[tuple[str, int, Fact]] = []
    offsets = dict.fromkeys(TOPIC.values(), -1)
    total = events = 0
    for line in gzip.decompress((directory / "events.jsonl.gz").read_bytes()).splitlines():
        event_ms, event = decode_timed(line)  # type: ignore[misc]
        source = TOPIC[orjson.loads(line)["type"]]
        offsets[source] += 1
        events += 1
        for item in joiner.apply(reducer.reduce(event, event_ms), event_ms, event_ms - 600_000, offsets[source]):
            if not isinstance(item, Finding):
                facts.append((f"{source}:0", offsets[source], item))
        if events % per_record == 0:
            marks = [(f"{topic}:0", event_ms - 600_000) for topic in TOPIC.values()]
            handled = [(f"{topic}:0", offset) for topic, offset in offsets.items()]
            out.append(encode(FactsRecord(FACTS_VERSION, marks, facts, handled)))
            total += len(facts)
            facts = []
    return out, total, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000, help="requests simulated (default: 50,000)")
    parser.add_argument("--worker-rate", type=int, default=24_000, help="one worker's events/s (default: 24,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        subprocess.run([sys.executable, "-m", "monitor.cli", "simulate", "--out", tmp, "--requests",
                        str(args.requests), "--fault", "all-windowed"], check=True, capture_output=True)  # fmt: skip
        raw, facts, events = records(directory, max(1, args.worker_rate // 4))
        policy = load_policy(str(directory / "policy.toml"))
    best = float("inf")
    for _ in range(args.repeat):
        host = StageHost(policy, KAFKA, TopicWriter(lambda: None, "unused"), len(TOPIC))
        host.owned = True
        started = time.perf_counter()
        for record in raw:
            host.apply(record)
        best = min(best, time.perf_counter() - started)
    ceiling = facts / best
    per_event = facts / events
    serves = ceiling / (per_event * args.worker_rate)
    print(f"{events:,} events gave {facts:,} window facts ({per_event:.2f} per event) in {len(raw)} records")
    print(f"window stage: {ceiling:,.0f} facts/s ({events / best:,.0f} input events/s), best of {args.repeat}")
    print(f"one stage keeps up with {serves:.1f} workers at {args.worker_rate:,} events/s each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
