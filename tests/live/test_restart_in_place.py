"""Restart in place (``--state-dir``): a worker started on the local state a killed one left reads only the
changelog's tail, and never serves state that is not the changelog's: a local state behind the changelog is
caught up, and one that is deleted, corrupt or ahead of it (the topics recreated) is read from the changelog
whole. Every case is judged by the findings: exactly what a replay of what was published finds."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from monitor.cli import main
from monitor.replay.report import load_truth
from tests.live.conftest import (
    Worker,
    closing_ticks,
    consume_all,
    create_topics,
    produce,
    publish_lines,
    scenario_lines,
    topics_and_expected,
)

INFO = {"DISMON_LOG_LEVEL": "INFO"}


def _recovered(log: Path) -> tuple[dict[int, int], int]:
    """What the last start said it recovered: local state up to which offset, by partition, and how many
    changelog records it read."""
    found = re.findall(
        r"local state up to changelog offsets \{([^}]*)\}; read (\d+) changelog records", log.read_text()
    )
    assert found, f"no recovery line in {log.name}"
    offsets, read = found[-1]
    return {int(p): int(o) for p, o in re.findall(r"(\d+): (-?\d+)", offsets)}, int(read)


def test_local_state_behind_deleted_or_corrupt_is_caught_up_or_read_whole(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    lines = scenario_lines(directory)
    quarter = len(lines) // 4
    policy, state = directory / "policy.toml", directory / "a.state"

    def worker(name: str) -> Worker:
        return Worker(kafka_bootstrap, prefix, policy, directory / f"{name}.log", env=INFO, state_dir=state)

    publish_lines(directory, "q1", lines[:quarter], kafka_bootstrap, prefix)
    first = worker("first")
    first.wait_caught_up(quarter)  # and its join state on the broker, so that the local copy has some
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    local, _read = _recovered(directory / "first.log")
    assert local == {}  # a fresh directory: nothing local to use

    # Another worker, with a state directory of its own, carries on: the changelog moves past the local state.
    publish_lines(directory, "q2", lines[quarter : 2 * quarter], kafka_bootstrap, prefix)
    other = Worker(kafka_bootstrap, prefix, policy, directory / "other.log", state_dir=directory / "b.state")
    other.wait_caught_up(quarter)
    assert other.stop() == 0

    publish_lines(directory, "q3", lines[2 * quarter : 3 * quarter], kafka_bootstrap, prefix)
    behind = worker("behind")
    behind.wait_caught_up(quarter)
    assert behind.stop(signal.SIGKILL) == -signal.SIGKILL
    local, read = _recovered(directory / "behind.log")
    assert sorted(local) == [0, 1, 2, 3] and read > 0  # the local state, then the tail the other worker wrote

    # One partition's local state deleted, another's snapshot corrupt: those two are read whole.
    shutil.rmtree(next(state.glob("*-join-state-changelog")) / "1")
    snapshot = next(state.glob("*-join-state-changelog")) / "2" / "snapshot"
    snapshot.write_bytes(snapshot.read_bytes()[:-1] + b"\0")
    publish_lines(directory, "q4", lines[3 * quarter :], kafka_bootstrap, prefix)
    asyncio.run(produce(kafka_bootstrap, ticks))
    last = worker("last")
    try:
        last.wait_caught_up(len(lines) - 3 * quarter + len(ticks))
    finally:
        assert last.stop() == 0
    log = (directory / "last.log").read_text()
    assert "join state of partition 1: reading the whole changelog: no local state" in log
    assert "join state of partition 2: reading the whole changelog: the local snapshot is corrupt" in log
    assert sorted(_recovered(directory / "last.log")[0]) == [0, 3]

    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected  # nothing lost, nothing new: never wrong state


async def _delete_group_topics(boot: str, prefix: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith((f"{prefix}.", f"{group}-"))]
        await admin.delete_topics(topics)
        for _ in range(100):  # deletion is asynchronous on the broker
            if not {t for t in await admin.list_topics() if t in topics}:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"topics not deleted: {topics}")
    finally:
        await admin.close()


def test_local_state_ahead_of_a_recreated_changelog_is_not_used(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    lines = scenario_lines(directory)
    half = len(lines) // 2
    policy, state = directory / "policy.toml", directory / "a.state"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    publish_lines(directory, "first", lines[:half], kafka_bootstrap, prefix)
    first = Worker(kafka_bootstrap, prefix, policy, directory / "first.log", state_dir=state)
    first.wait_caught_up(half)
    assert first.stop() == 0

    # The pipeline's topics deleted and made again, and only the first half's disclosing responses published to
    # them: without their requests they are orphans; a worker that still held the old requests would join them.
    asyncio.run(_delete_group_topics(kafka_bootstrap, prefix, f"{prefix}-group"))
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    again = [line for line in lines[:half] if b'"type":"response"' in line and orjson.loads(line).get("disclosed")]
    publish_lines(directory, "again", again, kafka_bootstrap, prefix)
    ticks = closing_ticks(prefix, load_truth(str(directory / "truth.json")).until_ms)
    asyncio.run(produce(kafka_bootstrap, ticks))
    (directory / "again.jsonl").write_bytes(b"".join(line + b"\n" for line in again + [v for *_r, v in ticks]))
    assert main(["replay", "--policy", str(policy), "--alerts-out", str(directory / "again-alerts.jsonl"),
                 str(directory / "again.jsonl")]) == 0  # fmt: skip
    capsys.readouterr()
    replayed = [orjson.loads(line) for line in (directory / "again-alerts.jsonl").read_bytes().splitlines()]
    assert sum(a["rule"] == "orphan_disclosure" for a in replayed) >= len(again) // 2  # what old state would hide
    expected = {a["alert_id"] for a in replayed}

    restarted = Worker(kafka_bootstrap, prefix, policy, directory / "restarted.log", env=INFO, state_dir=state)
    try:
        restarted.wait_caught_up(len(again) + len(ticks))
    finally:
        assert restarted.stop() == 0
    log = (directory / "restarted.log").read_text()
    assert "the local state is ahead of the changelog" in log
    assert _recovered(directory / "restarted.log")[0] == {}
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected
