"""What the command line refuses before anything starts: values out of range, settings that cannot work,
given as flags or as ``$DISMON_*`` variables (monitor/cli/arguments.py, monitor/live/kafka.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from monitor.cli import main
from tests.conftest import POLICY_TOML, raw


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "--max-event-bytes", "0"], "argument --max-event-bytes: not a positive whole number: '0'"),
        (["replay", "--max-join-entries", "-3"], "argument --max-join-entries: not a positive whole number: '-3'"),
        (["replay", "--metrics-port", "70000"], "argument --metrics-port: not a TCP port (1-65535): '70000'"),
        (["replay", "--allowed-lateness", "99999999d"], "argument --allowed-lateness: too long"),
        (["simulate", "--requests", "0"], "argument --requests: not a positive whole number: '0'"),
        (["simulate", "--days", "0"], "argument --days: not a positive whole number"),
        (["simulate", "--fault-rate", "2"], "argument --fault-rate: not a share between 0 (exclusive) and 1: '2'"),
        (["worker", "--partitions", "0"], "argument --partitions: not a positive whole number"),
        (["worker", "--idle-after", "soon"], "argument --idle-after: not a duration: 'soon'"),
        (["worker", "--session-timeout", "1ms"], "argument --session-timeout: '1ms' is outside"),
        (["worker", "--alertmanager-url", "alertmanager:9093"], "argument --alertmanager-url: not an http(s) URL"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    required = {
        "replay": ["--policy", "p.toml", "events.jsonl"],
        "simulate": ["--out", "out"],
        "worker": ["--policy", "p.toml"],
    }[argv[0]]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *required])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_worker_settings_from_the_environment_are_checked_like_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value, message in [
        ("DISMON_MAX_JOIN_ENTRIES", "abc", "argument --max-join-entries"),
        ("DISMON_METRICS_PORT", "99999", "argument --metrics-port"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as exit_info:
            main(["worker", "--policy", "policy.toml"])
        monkeypatch.delenv(name)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bootstrap-servers", "127.0.0.1:notaport"], "not a broker address: '127.0.0.1:notaport'"),
        (["--bootstrap-servers", "a:9092,,b:9092"], "not a broker address: ''"),
        (
            ["--security-protocol", "SASL_SSL", "--sasl-username", "u"],
            "SASL_SSL needs --sasl-mechanism, --sasl-username",
        ),
    ],
)
def test_kafka_settings_that_cannot_work_are_refused_before_connecting(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--requests", "10"]) == 0
    capsys.readouterr()
    assert main(["worker", "--policy", str(tmp_path / "policy.toml"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_simulate_refuses_what_would_write_nothing_useful(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--fault", "all", "--fault-start", "2099-01-01"]) == 2
    assert "no per-request fault would be injected" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["simulate", "--out", str(blocker / "dir"), "--requests", "10"]) == 2
    assert f"cannot write the scenario to {blocker / 'dir'}" in capsys.readouterr().err


def test_a_port_in_use_is_the_same_usage_error_in_replay_and_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_TOML)
    log = tmp_path / "events.jsonl"
    log.write_bytes(raw("request") + b"\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        errors = []
        for command in (
            ["replay", "--policy", str(policy), "--metrics-port", port, str(log)],
            ["worker", "--policy", str(policy), "--metrics-port", port, "--bootstrap-servers", "127.0.0.1:9"],
        ):
            assert main(command) == 2
            errors.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert (
        errors[0]
        == errors[1]
        == f"dismon: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use (choose another --metrics-port)"
    )
