"""``dismon worker`` against the real local broker: parity with replay, bad input, a crash mid-stream."""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.cli import main
from monitor.core.ledger import read_record, record_bytes
from monitor.live.kafka import KafkaSettings, read_partitions
from monitor.replay.report import load_truth
from tests.conftest import raw
from tests.live.conftest import (
    ENV,
    PARTITIONS,
    Worker,
    consume_all,
    create_topics,
    in_two_halves,
    produce,
    publish,
    replayed_windowed,
    scenario_lines,
    topics_and_expected,
    windowed_outcome,
)


def test_worker_finds_exactly_what_replay_finds(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    published = publish(directory, kafka_bootstrap, prefix, capsys)
    asyncio.run(produce(kafka_bootstrap, ticks))
    worker = Worker(kafka_bootstrap, prefix, directory / "policy.toml", directory / "worker.log")
    try:
        worker.wait_for_events(published + len(ticks))
        time.sleep(2)
        exposition = worker.metrics()
    finally:
        assert worker.stop() == 0  # SIGTERM: a clean exit
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected
    # The live exposition is clean, caught up, and counts what went out.
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make setup` installs it (deploy/local/tools.sh)"
    check = subprocess.run([promtool, "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    assert sum(v for k, v in samples.items() if k.startswith("dismon_consumer_lag{")) == 0
    firing = sum(v for k, v in samples.items() if k.startswith("dismon_findings_total{") and 'status="firing"' in k)
    assert firing == len(expected)
    assert all(key == a["alert_id"].encode() for key, a in alerts)


def test_a_worker_killed_mid_stream_loses_no_finding_and_accounts_each_disclosure_once(
    kafka_bootstrap: str,
    scenario: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory, prefix = scenario
    monkeypatch.setenv("DISMON_SUBJECT_KEY", ENV["DISMON_SUBJECT_KEY"])  # the workers' key: the same subject_refs
    keys = ("--private", str(directory / "ledger.key"), "--public", str(directory / "ledger.pub"))
    assert main(["ledger", "keygen", *keys]) == 0
    ledger = ("--ledger-key", str(directory / "ledger.key"), "--ledger-checkpoint-interval", "1s")
    ticks, expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    lines = scenario_lines(directory)
    half = len(lines) // 2
    (directory / "first.jsonl").write_bytes(b"\n".join(lines[:half]) + b"\n")
    (directory / "second.jsonl").write_bytes(b"\n".join(lines[half:]) + b"\n")
    policy = directory / "policy.toml"
    for part in ("first", "second"):
        (directory / f"{part}.jsonl.gz").write_bytes(gzip.compress((directory / f"{part}.jsonl").read_bytes()))

    def publish(part: str) -> int:
        assert (
            main(
                [
                    "replay",
                    "--to-kafka",
                    "--policy",
                    str(policy),
                    "--bootstrap-servers",
                    kafka_bootstrap,
                    "--topic-prefix",
                    prefix,
                    str(directory / f"{part}.jsonl.gz"),
                ]
            )
            == 0
        )
        return int(capsys.readouterr().err.split("published ")[1].split(" events")[0].replace(",", ""))

    first = publish("first")
    worker = Worker(kafka_bootstrap, prefix, policy, directory / "worker.log", extra=ledger)
    worker.wait_for_events(first)
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL  # no goodbye: state only in the changelog
    publish("second")
    asyncio.run(produce(kafka_bootstrap, ticks))
    restarted = Worker(kafka_bootstrap, prefix, policy, directory / "restarted.log", extra=ledger,
                       env={"DISMON_LOG_LEVEL": "INFO"}, state_dir=directory / "worker.state")  # fmt: skip
    try:
        restarted.wait_caught_up(len(lines) - first + len(ticks))  # at least the rest (some may repeat)
    finally:
        restarted.stop()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected  # repeats allowed (same ids), nothing lost or new
    # The ledger topic holds each disclosure once, the same entries a replay's ledger holds, and verifies.
    assert main(["replay", "--policy", str(policy), "--alerts-out", str(directory / "a.jsonl"), "--ledger",
                 str(directory / "ledger"), "--ledger-key", str(directory / "ledger.key"),
                 str(directory / "with-ticks.jsonl")]) == 0  # fmt: skip
    replayed = [read_record(line).id for line in (directory / "ledger/entries.jsonl").read_bytes().splitlines()]
    written: list[bytes] = []
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix)
    asyncio.run(read_partitions(kafka, f"{prefix}.ledger", [0], lambda _p, _k, value: written.append(value or b"")))
    live = [read_record(value).id for value in written]
    assert len(live) == len(set(live)) and set(live) == set(replayed) and replayed
    capsys.readouterr()
    verify = ["ledger", "verify", "--kafka", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix,
              "--public-key", str(directory / "ledger.pub")]  # fmt: skip
    assert main(verify) == 0
    assert f"{len(live):,} entries" in capsys.readouterr().out  # the checkpoint at the stop covers them all
    # A record appended behind the writer's back (a copy of an entry) is caught and named.
    forged = record_bytes(len(live), live[0], read_record(written[0]).entry)
    asyncio.run(produce(kafka_bootstrap, [(f"{prefix}.ledger", 0, b"forged", forged)]))
    assert main(verify) == 1
    assert f"entry {len(live)} (id {live[0]}) repeats entry 0" in capsys.readouterr().out
    # The join state came back from the local state the killed worker left (the same --state-dir), leaving Faust's
    # recovery nothing to do.
    log = (directory / "restarted.log").read_text()
    read = re.search(r"join state of partitions \[0, 1, 2, 3\]: .*local state up to changelog offsets \{([^}]*)\}", log)
    assert read is not None and read.group(1).count(":") == PARTITIONS, "no local state in the restarted worker"
    assert "Restoring state from changelog topics" not in log


def test_garbage_goes_to_dead_letters_and_good_events_around_it_are_processed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    policy = tmp_path / "policy.toml"
    assert main(["simulate", "--out", str(tmp_path), "--requests", "10"]) == 0
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    request = raw(
        "request",
        agreement_id="tax-enforcement-2025",
        subject__address__street="Failed to Provide",
        submitted_at="2025-06-03T10:00:00Z",
    )
    response = raw("response", agreement_id="tax-enforcement-2025", responded_at="2025-06-03T11:00:00Z")
    garbage = [b"not json at all", raw("request", request_id=5), b'{"type":"response","x":"' + b"y" * 1_000_000 + b'"}']
    records = [(f"{prefix}.requests", 0, b"r1", request)]
    records += [(f"{prefix}.requests", 0, b"bad", blob) for blob in garbage]
    records += [(f"{prefix}.responses", 0, b"r1", response)]
    asyncio.run(produce(kafka_bootstrap, records))
    worker = Worker(kafka_bootstrap, prefix, policy, tmp_path / "worker.log", extra=("--dead-letter-payload",))
    try:
        worker.wait_for_events(2)
        time.sleep(2)
    finally:
        worker.stop()
    dead = [record for _, record in asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.deadletter"))]
    # --dead-letter-payload: the bytes are kept (base64, capped), so the producer's bug can be seen and fixed.
    assert [base64.b64decode(d.pop("payload_b64")) for d in dead] == [garbage[0], garbage[1], garbage[2][: 256 * 1024]]
    assert [d.pop("payload_truncated") for d in dead] == [False, False, True]
    assert [(d["reason"], d["topic"], d["partition"], d["offset"]) for d in dead] == [
        ("invalid_json", f"{prefix}.requests", 0, 1),
        ("wrong_type:request_id", f"{prefix}.requests", 0, 2),
        ("oversized", f"{prefix}.requests", 0, 3),
    ]
    alerts = [a for _, a in asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))]
    assert [a["rule"] for a in alerts] == ["incomplete_request_disclosure"]
    assert "Failed to Provide" not in str(dead) + str(alerts)


def test_two_workers_split_partitions_and_one_takes_over_from_the_other(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    expected, ticks, lines, half = in_two_halves(kafka_bootstrap, directory, prefix, capsys)
    policy = directory / "policy.toml"
    one = Worker(kafka_bootstrap, prefix, policy, directory / "one.log", env={"DISMON_LOG_LEVEL": "INFO"})
    two = Worker(kafka_bootstrap, prefix, policy, directory / "two.log")
    try:
        assert (
            main(
                [
                    "replay",
                    "--to-kafka",
                    "--policy",
                    str(policy),
                    "--bootstrap-servers",
                    kafka_bootstrap,
                    "--topic-prefix",
                    prefix,
                    str(directory / "first.jsonl.gz"),
                ]
            )
            == 0
        )
        deadline = time.monotonic() + 90
        while one.events() + two.events() < half and time.monotonic() < deadline:
            time.sleep(0.5)
        assert one.events() > 0 and two.events() > 0  # the partitions are split between them
        done_by_two = two.events()
        assert two.stop() == 0
        assert (
            main(
                [
                    "replay",
                    "--to-kafka",
                    "--policy",
                    str(policy),
                    "--bootstrap-servers",
                    kafka_bootstrap,
                    "--topic-prefix",
                    prefix,
                    str(directory / "second.jsonl.gz"),
                ]
            )
            == 0
        )
        asyncio.run(produce(kafka_bootstrap, ticks))
        one.wait_caught_up(len(lines) + len(ticks) - done_by_two)
    finally:
        one.stop()
        if two.process.poll() is None:
            two.stop()
    capsys.readouterr()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    extra = [(a["rule"], a["request_id"]) for _, a in alerts if a["alert_id"] not in expected]
    assert {a["alert_id"] for _, a in alerts} == expected, f"unexpected: {extra}"
    # The windowed rules counted the whole stream, whichever worker had which partitions when.
    windowed = windowed_outcome(a for _, a in alerts)
    assert windowed == replayed_windowed(directory)
    assert {rule for rule, *_ in windowed} >= {"daily_cap_exceeded"}
    # The partitions taken over started from the standby copy the survivor kept of them, not from nothing.
    took = re.findall(r"standby copies up to changelog offsets \{([^}]*)\}", (directory / "one.log").read_text())
    assert took and any(int(offset) >= 0 for offset in re.findall(r": (-?\d+)", took[-1])), took


def test_a_worker_that_gives_partitions_away_forgets_their_requests(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """One worker runs alone through half the stream, then a second joins and takes some of its partitions
    with their join state. Requests of those partitions still waiting for an answer or a disposal must be
    judged by the new owner only: were they left in the first worker, its timers would fire for them on
    events it no longer sees (false SLA breaches, false overdue disposals)."""
    directory, prefix = scenario
    expected, ticks, lines, half = in_two_halves(kafka_bootstrap, directory, prefix, capsys)
    policy = directory / "policy.toml"

    def publish(part: str) -> None:
        assert (
            main(
                [
                    "replay",
                    "--to-kafka",
                    "--policy",
                    str(policy),
                    "--bootstrap-servers",
                    kafka_bootstrap,
                    "--topic-prefix",
                    prefix,
                    str(directory / f"{part}.jsonl.gz"),
                ]
            )
            == 0
        )

    one = Worker(kafka_bootstrap, prefix, policy, directory / "one.log")
    two = None
    try:
        publish("first")
        one.wait_caught_up(half)
        two = joined = Worker(kafka_bootstrap, prefix, policy, directory / "two.log")
        publish("second")
        asyncio.run(produce(kafka_bootstrap, ticks))
        total = len(lines) + len(ticks)
        one._wait(lambda: one.events() + joined.events() >= total, 90, "through the stream (both workers)")
        one.wait_caught_up(half)
        joined.wait_caught_up(1)
        assert joined.events() > 0  # it did take partitions
    finally:
        one.stop()
        if two is not None:
            two.stop()
    capsys.readouterr()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    extra = sorted((a["rule"], a["request_id"]) for _, a in alerts if a["alert_id"] not in expected)
    assert not extra, f"found by a worker that no longer owned the request: {extra}"
    assert {a["alert_id"] for _, a in alerts} == expected
    windowed = windowed_outcome(a for _, a in alerts)
    assert windowed == replayed_windowed(directory) and {rule for rule, *_ in windowed} >= {"daily_cap_exceeded"}


def test_worker_refuses_to_start_on_a_broken_policy_or_uncopartitioned_topics(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[agreement]]\nid = "x"\n')
    assert main(["worker", "--policy", str(broken), "--bootstrap-servers", kafka_bootstrap]) == 2
    assert "broken.toml" in capsys.readouterr().err
    prefix = f"t{uuid.uuid4().hex[:10]}"

    async def lopsided() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(f"{prefix}.requests", 4, 1),
                    NewTopic(f"{prefix}.responses", 2, 1),
                    NewTopic(f"{prefix}.disposals", 4, 1),
                ]
            )
        finally:
            await admin.close()

    asyncio.run(lopsided())
    assert main(["simulate", "--out", str(tmp_path), "--requests", "10"]) == 0
    code = main(
        [
            "worker",
            "--policy",
            str(tmp_path / "policy.toml"),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic-prefix",
            prefix,
        ]
    )
    assert code == 2
    assert "not co-partitioned" in capsys.readouterr().err
    # A metrics port in use: refused before the worker touches Kafka (no topics of a new prefix appear).
    fresh = f"t{uuid.uuid4().hex[:10]}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            [
                "worker",
                "--policy",
                str(tmp_path / "policy.toml"),
                "--bootstrap-servers",
                kafka_bootstrap,
                "--topic-prefix",
                fresh,
                "--metrics-port",
                str(port),
            ]
        )
    assert code == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err

    async def topics() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert not {topic for topic in asyncio.run(topics()) if topic.startswith(fresh)}


def test_publishing_creates_co_partitioned_topics_or_refuses_before_creating_any(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--requests", "20"]) == 0
    publish = [
        "replay",
        "--to-kafka",
        "--policy",
        str(tmp_path / "policy.toml"),
        "--bootstrap-servers",
        kafka_bootstrap,
        str(tmp_path / "events.jsonl.gz"),
    ]

    async def partitions(prefix: str) -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return {
                t["topic"].removeprefix(f"{prefix}."): len(t["partitions"])
                for t in await admin.describe_topics()
                if t["topic"].startswith(f"{prefix}.")
            }
        finally:
            await admin.close()

    async def create(topics: dict[str, int]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
        finally:
            await admin.close()

    fresh = f"t{uuid.uuid4().hex[:10]}"  # nothing there: every topic, the disposals one too, with --partitions
    assert main([*publish, "--topic-prefix", fresh, "--partitions", "3"]) == 0
    assert asyncio.run(partitions(fresh)) == dict.fromkeys(
        ["requests", "responses", "disposals", "alerts", "deadletter"], 3
    )
    one = f"t{uuid.uuid4().hex[:10]}"  # e.g. auto-created by the broker with its default of one partition
    asyncio.run(create({f"{one}.requests": 1}))
    assert main([*publish, "--topic-prefix", one]) == 0
    assert "input topics have 1 partitions already" in caplog.text
    assert set(asyncio.run(partitions(one)).values()) == {1}
    lopsided = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(create({f"{lopsided}.requests": 2, f"{lopsided}.responses": 3}))
    assert main([*publish, "--topic-prefix", lopsided]) == 2
    assert "not co-partitioned" in capsys.readouterr().err
    assert asyncio.run(partitions(lopsided)) == {"requests": 2, "responses": 3}  # nothing created


def test_a_worker_killed_during_a_burst_of_disposals_and_responses_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Many improper disclosures; the recipient disposes of half of them in time, the other half never.
    # Big enough (about 42,000 events) that the worker is still busy with it when it is killed.
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "20000",
                "--seed",
                "21",
                "--fault",
                "incomplete_request_disclosure",
                "--fault",
                "disposal_overdue",
                "--fault-rate",
                "0.3",
            ]
        )
        == 0
    )
    # The policy turns every windowed rule on: their state is taken back after the restart too.
    policy = tmp_path / "policy.toml"
    prefix = f"t{uuid.uuid4().hex[:10]}"
    ticks, expected = topics_and_expected(kafka_bootstrap, tmp_path, prefix, capsys)
    published = publish(tmp_path, kafka_bootstrap, prefix, capsys)
    asyncio.run(produce(kafka_bootstrap, ticks))
    worker = Worker(kafka_bootstrap, prefix, policy, tmp_path / "worker.log")
    worker._wait(lambda: worker.events() >= published * 0.4, 90, "into the burst")
    processed = worker.events()
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    assert processed < published  # killed mid-stream, not after it
    restarted = Worker(kafka_bootstrap, prefix, policy, tmp_path / "worker.log")
    try:
        restarted.wait_caught_up(published + len(ticks) - processed)
    finally:
        restarted.stop()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    ids = [a["alert_id"] for _, a in alerts]
    assert set(ids) == expected  # nothing lost, nothing new: the same ids, some sent twice
    windowed = windowed_outcome(a for _, a in alerts)
    assert windowed == replayed_windowed(tmp_path)
    assert {rule for rule, *_ in windowed} >= {"daily_cap_exceeded", "disclosure_ratio_drift"}  # as in the replay
    overdue = {a["request_id"] for _, a in alerts if a["rule"] == "disposal_overdue"}
    truth = load_truth(str(tmp_path / "truth.json"))
    should = {request_id for rule, request_id in truth.expected if rule == "disposal_overdue"}
    assert overdue == should and len(should) > 100  # none reported as disposed that was not, nor the reverse


async def _changelog_counts(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records readable from the start of ``topic``, offsets ever written to it)."""
    records = 0

    def count(_partition: int, _key: bytes | None, _value: bytes | None) -> None:
        nonlocal records
        records += 1

    # Compaction never touches the newest segment, so each partition's last offset is still there to read.
    last = await read_partitions(KafkaSettings(bootstrap_servers=bootstrap), topic, range(PARTITIONS), count)
    return records, sum(offset + 1 for offset in last.values())


def test_a_restart_recovers_from_a_compacted_changelog(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # With short changelog segments the broker compacts the join state while the worker runs; a worker
    # started afterwards recovers from what compaction left and still finds exactly what a replay finds.
    directory, prefix = scenario
    expected, ticks, lines, _half = in_two_halves(kafka_bootstrap, directory, prefix, capsys)
    policy, log, extra = directory / "policy.toml", directory / "worker.log", ("--changelog-segment", "1s")
    changelog = f"{prefix}-group-join-state-changelog"
    # Three parts a segment apart: the second updates entries of the first (their responses), so once the
    # third rolls the second segment, compaction has superseded records to drop.
    third = len(lines) // 3
    parts = [lines[:third], lines[third : 2 * third], lines[2 * third :]]
    for number, part in enumerate(parts):
        (directory / f"part{number}.jsonl.gz").write_bytes(gzip.compress(b"\n".join(part) + b"\n"))
    worker = Worker(kafka_bootstrap, prefix, policy, log, extra)
    try:
        for number, _part in enumerate(parts):
            if number:
                time.sleep(1.5)  # the next write rolls the changelog's segments
            assert (
                main(
                    [
                        "replay",
                        "--to-kafka",
                        "--policy",
                        str(policy),
                        "--bootstrap-servers",
                        kafka_bootstrap,
                        "--topic-prefix",
                        prefix,
                        str(directory / f"part{number}.jsonl.gz"),
                    ]
                )
                == 0
            )
            worker.wait_caught_up(third * (number + 1))
        deadline = time.monotonic() + 90
        while (counts := asyncio.run(_changelog_counts(kafka_bootstrap, changelog)))[0] >= counts[1]:
            assert time.monotonic() < deadline, f"changelog not compacted (records read, offsets): {counts}"
            time.sleep(2)
    finally:
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    asyncio.run(produce(kafka_bootstrap, ticks))  # the timed findings now depend on the recovered state
    restarted = Worker(kafka_bootstrap, prefix, policy, log, extra)
    try:
        restarted.wait_caught_up(len(ticks))
    finally:
        restarted.stop()
    capsys.readouterr()
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    assert {a["alert_id"] for _, a in alerts} == expected
