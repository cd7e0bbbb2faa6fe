"""Producers that partition by another hash (librdkafka's CRC32, as kcat, confluent-kafka and the Go and Node
clients do by default): a request's join state follows the input partition it arrived on, so a worker that
takes over that partition after another died has the request when its responses come."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.live.conftest import (
    Worker,
    consume_all,
    produce,
    scenario_lines,
    topics_and_expected,
)

KIND_OF = {"request": "requests", "response": "responses", "disposal": "disposals"}


def _kcat(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Publish ``lines`` keyed by request id with kcat and librdkafka's default partitioner."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat missing: `make setup` installs it (deploy/local/tools.sh)"
    keyed = b"".join(orjson.loads(line)["request_id"].encode() + b"\t" + line + b"\n" for line in lines)
    subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "message.max.bytes=4000000"],
        input=keyed, check=True, timeout=120, capture_output=True,
    )  # fmt: skip


def test_a_crc32_partitioned_stream_survives_a_worker_killed_between_requests_and_responses(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    by_kind: dict[str, list[bytes]] = {kind: [] for kind in KIND_OF.values()}
    for line in scenario_lines(directory):
        by_kind[KIND_OF[orjson.loads(line)["type"]]].append(line)
    policy = directory / "policy.toml"
    one = Worker(kafka_bootstrap, prefix, policy, directory / "one.log")
    two = Worker(kafka_bootstrap, prefix, policy, directory / "two.log")
    try:
        _kcat(kafka_bootstrap, f"{prefix}.requests", by_kind["requests"])
        deadline = time.monotonic() + 90
        while one.events() + two.events() < len(by_kind["requests"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert one.events() > 0 and two.events() > 0  # the partitions are split between them
        time.sleep(2)  # a few checkpoints: the requests' join state is in the changelog
        done_by_two = two.events()
        assert two.stop(signal.SIGKILL) == -signal.SIGKILL
        _kcat(kafka_bootstrap, f"{prefix}.responses", by_kind["responses"])
        _kcat(kafka_bootstrap, f"{prefix}.disposals", by_kind["disposals"])
        asyncio.run(produce(kafka_bootstrap, ticks))
        total = sum(len(lines) for lines in by_kind.values()) + len(ticks)
        one.wait_caught_up(total - done_by_two, seconds=150)
    finally:
        one.stop()
        if two.process.poll() is None:
            two.stop(signal.SIGKILL)
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    found = {a["alert_id"] for _, a in alerts}
    orphans = [a["request_id"] for _, a in alerts if a["alert_id"] not in expected and a["rule"] == "orphan_disclosure"]
    assert not orphans, f"{len(orphans)} false orphan_disclosure alerts"
    assert found == expected, f"missing {len(expected - found)}, extra {len(found - expected)}"
