"""Static group membership (``--instance-id``): a worker killed and started again under the same identity
takes its partitions back at once instead of after the session timeout, loses no finding, and a second
process that takes the same identity stops the first, which never runs beside it."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.live.conftest import (
    STARTED,
    Worker,
    consume_all,
    produce,
    publish_lines,
    scenario_lines,
    topics_and_expected,
)

SESSION_TIMEOUT_S = 30


def test_a_killed_worker_restarted_under_its_identity_is_back_before_the_session_timeout(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    lines = scenario_lines(directory)
    half = len(lines) // 2
    identity = ("--instance-id", "worker-a", "--session-timeout", f"{SESSION_TIMEOUT_S}s")
    policy = directory / "policy.toml"

    publish_lines(directory, "first", lines[:half], kafka_bootstrap, prefix)
    first = Worker(kafka_bootstrap, prefix, policy, directory / "first.log", extra=identity)
    first.wait_for_events(half)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # no goodbye: the broker still counts it a member
    started = time.monotonic()
    second = Worker(kafka_bootstrap, prefix, policy, directory / "second.log", extra=identity)  # returns when ready
    back_after = time.monotonic() - started
    # A new identity would wait for the dead member's session to time out before any rebalance.
    assert back_after < SESSION_TIMEOUT_S / 2, f"ready {back_after:.1f} s after the restart"

    # Another process under the same identity: it takes the place, and the one that had it stops at once.
    third = Worker(kafka_bootstrap, prefix, policy, directory / "third.log", extra=identity)
    assert second.process.wait(timeout=60) != 0
    second.log.close()
    fenced = (directory / "second.log").read_text()
    assert "another worker joined the group with the same --instance-id 'worker-a'" in fenced
    try:
        publish_lines(directory, "second", lines[half:], kafka_bootstrap, prefix)
        asyncio.run(produce(kafka_bootstrap, ticks))
        third.wait_caught_up(len(lines) - half + len(ticks))
    finally:
        assert third.stop() == 0
        STARTED.clear()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected  # nothing lost across the kill and the hand-over
