"""Reading a replay's input in a second process gives the detector exactly what an in-process read gives it."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path

import orjson
import pytest

from monitor.cli import main
from monitor.config import load_policy
from monitor.core.detector import Detector
from monitor.core.digests import Digest, Reducer
from monitor.core.findings import Finding, SubjectHasher
from monitor.errors import InputError
from monitor.replay.read_ahead import BATCH_EVENTS, Split, read_ahead_digests
from monitor.replay.run import ReplayOptions, ReplaySummary, run_replay
from monitor.replay.sources import ByteCounter, DeadLetter, ReadOptions, merged_events

KEY = b"read-ahead-test-key"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A scenario with every fault, in three gzip partitions plus a plain file with bad lines and a late event."""
    out = tmp_path_factory.mktemp("read-ahead")
    assert (
        main(
            [
                "simulate",
                "--out",
                str(out),
                "--requests",
                "7000",
                "--fault",
                "all",
                "--fault-rate",
                "0.02",
                "--partitions",
                "3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    parts = sorted(out.glob("events-p*.jsonl.gz"))
    lines = gzip.open(parts[2]).read().splitlines()
    parts[2].unlink()
    plain = out / "events-p2.jsonl"
    # A late event (the partition's first, again at its end), broken JSON, an event missing a field, and one
    # too large: each must reach the detector or the dead letters exactly as an in-process read has them.
    plain.write_bytes(
        b"\n".join([*lines[:100], b"{broken", b'{"type":"request"}', *lines[100:], b"x" * 70_000, lines[0]]) + b"\n"
    )
    files = [str(p) for p in parts[:2]] + [str(plain)]
    assert sum(len(gzip.open(p).read().splitlines()) for p in parts[:2]) + len(lines) > 5 * BATCH_EVENTS
    return out / "policy.toml", files


def _replay(
    policy: Path,
    files: list[str],
    read_ahead: Split | None,
) -> tuple[list[Finding], list[DeadLetter], ReplaySummary, ByteCounter]:
    detector = Detector(load_policy(str(policy)), SubjectHasher(KEY))
    findings: list[Finding] = []
    dead: list[DeadLetter] = []
    counter = ByteCounter()
    summary = run_replay(
        files, detector, findings.append, dead.append, ReplayOptions(read_ahead=read_ahead), counter=counter
    )
    return findings, dead, summary, counter


def _read_ahead(files: list[str], policy: Path) -> Generator[tuple[int, int, Digest], None, None]:
    return read_ahead_digests(
        files, lambda letter: None, ReadOptions(60_000), Reducer(load_policy(str(policy)), SubjectHasher(KEY))
    )


@pytest.mark.parametrize("split", ["balanced", "reader", "replay"])
def test_the_same_findings_dead_letters_and_tallies_in_the_same_order(
    inputs: tuple[Path, list[str]], split: Split
) -> None:
    """Whichever process reduces which events: "reader" and "replay" force one side, "balanced" mixes."""
    policy, files = inputs
    inline = _replay(policy, files, read_ahead=None)
    ahead = _replay(policy, files, read_ahead=split)
    assert ahead[0] == inline[0]  # every field, detection clock included, in the same order
    assert len({f.rule for f in inline[0]}) >= 10
    assert ahead[1] == inline[1]
    assert [d.reason for d in inline[1]] == ["invalid_json", "missing_field:request_id", "oversized"]
    a, b = ahead[2], inline[2]
    assert (a.events, a.invalid, a.late_events, a.alerts, a.first_detection, a.state_at_end) == (
        b.events,
        b.invalid,
        b.late_events,
        b.alerts,
        b.first_detection,
        b.state_at_end,
    )
    assert b.late_events >= 1
    # Progress: every input byte is accounted for, though another process read them.
    assert ahead[3].consumed() == inline[3].consumed() == sum(os.path.getsize(f) for f in files)


def test_an_unreadable_input_fails_as_it_would_in_process(tmp_path: Path, inputs: tuple[Path, list[str]]) -> None:
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(
        gzip.compress(b'{"type":"request"}\n' * 1000)[:-40] + b"garbage-garbage-garbage-garbage-garbage"
    )
    with pytest.raises(InputError) as in_process:
        list(merged_events([str(corrupt)], lambda letter: None, ReadOptions(60_000)))
    with pytest.raises(InputError) as read_ahead:
        list(_read_ahead([str(corrupt)], inputs[0]))
    assert str(read_ahead.value) == str(in_process.value)
    assert str(in_process.value).startswith(f"{corrupt}: ")


def test_a_replay_that_stops_early_stops_the_reading_process(inputs: tuple[Path, list[str]]) -> None:
    policy, files = inputs
    digests = _read_ahead(files * 20, policy)  # far more than the pipe and the receiving queue hold
    next(digests)
    assert [p.name for p in multiprocessing.active_children()] == ["dismon-read"]
    digests.close()
    assert multiprocessing.active_children() == []


def test_a_reading_process_that_dies_is_an_input_error_not_a_hang(inputs: tuple[Path, list[str]]) -> None:
    policy, files = inputs
    digests = _read_ahead(files * 20, policy)
    next(digests)
    (reader,) = multiprocessing.active_children()
    os.kill(reader.pid or 0, signal.SIGKILL)
    with pytest.raises(InputError, match=r"the reading process ended unexpectedly \(exit code -9\)"):
        for _ in digests:
            pass


def test_the_command_line_reads_ahead_on_request_and_refuses_stdin(
    inputs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, files = inputs
    outputs = []
    for flag in ("--read-ahead", "--no-read-ahead"):
        assert main(["replay", "--policy", str(policy), flag, *files]) == 0
        out, err = capsys.readouterr()
        outputs.append(sorted(line[: line.index('"detected_at"')] for line in out.splitlines()))
        assert "invalid: 3" in err
    assert outputs[0] == outputs[1] and len(outputs[0]) > 50
    assert main(["replay", "--policy", str(policy), "--read-ahead", "-"]) == 2
    assert "--read-ahead cannot read stdin" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "dismon: interrupted"), (signal.SIGTERM, 143, "dismon: terminated")],
)
def test_stopping_a_replay_stops_its_reading_process_and_keeps_what_was_written(
    inputs: tuple[Path, list[str]], tmp_path: Path, signum: int, code: int, said: str
) -> None:
    policy, files = inputs
    alerts = tmp_path / "alerts.jsonl"
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "replay",
            "--policy",
            str(policy),
            "--read-ahead",
            "--alerts-out",
            str(alerts),
            *files * 40,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    children: set[int] = set()
    deadline = time.monotonic() + 30
    while not children and time.monotonic() < deadline:  # its reading process (and multiprocessing's tracker)
        time.sleep(0.05)
        children = {int(pid) for pid in Path(f"/proc/{replay.pid}/task/{replay.pid}/children").read_text().split()}
    assert children, "the replay started no reading process"
    while not (alerts.exists() and alerts.stat().st_size) and time.monotonic() < deadline + 30:
        time.sleep(0.05)  # alerts are on their way out (a buffer's worth at least)
    assert replay.poll() is None, "the replay ended before it could be stopped"
    replay.send_signal(signum)
    _, err = replay.communicate(timeout=30)
    assert replay.returncode == code
    assert said in err and "Traceback" not in err
    written = alerts.read_bytes()
    assert written.endswith(b"\n") and all(orjson.loads(line)["alert_id"] for line in written.splitlines())
    deadline = time.monotonic() + 10
    while [pid for pid in children if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_a_reading_process_that_cannot_start_is_a_clear_error(
    inputs: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.get_context("spawn").Process, "start", refuse)
    policy, files = inputs
    with pytest.raises(InputError, match=r"cannot start the reading process \(.*\); replay with --no-read-ahead"):
        next(_read_ahead(files, policy))
