"""Several pipelines on one cluster: each keeps its own state, or a worker refuses a group built for another."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.live.conftest import (
    ENV,
    Worker,
    consume_all,
    produce,
    publish,
    topics_and_expected,
)
from tests.services import free_port


def test_two_pipelines_with_the_same_request_ids_each_find_all_their_findings(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, first = scenario
    second = f"t{uuid.uuid4().hex[:10]}"
    expected: set[str] = set()
    for prefix in (first, second):  # the same events, so the same request ids, under two prefixes
        ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
        published = publish(directory, kafka_bootstrap, prefix, capsys)
        asyncio.run(produce(kafka_bootstrap, ticks))
        worker = Worker(kafka_bootstrap, prefix, directory / "policy.toml", directory / f"{prefix}.log", group=None)
        try:
            worker.wait_caught_up(published + len(ticks))
        finally:
            assert worker.stop() == 0
        alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
        assert {a["alert_id"] for _, a in alerts} == expected, f"pipeline {prefix}"
    assert len(expected) > 20

    # A third pipeline told to use the first one's group (dismon-<first>) is refused before it joins.
    third = f"t{uuid.uuid4().hex[:10]}"
    refused = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "worker", "--policy", str(directory / "policy.toml"),
         "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", third, "--group", f"dismon-{first}",
         "--metrics-port", str(free_port())],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-2000:]
    message = refused.stderr.strip().splitlines()[-1]
    assert f"consumer group 'dismon-{first}' holds state built from {first}." in message
    assert f"{third}.requests" in message and "own group" in message
