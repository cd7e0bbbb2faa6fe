"""``dismon replay`` and ``dismon simulate`` end to end, through the command line a user runs."""

from __future__ import annotations

import gzip
import io
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.cli import main
from monitor.replay.report import load_truth

FAULTS = ["all"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenario")
    code = main(
        [
            "simulate",
            "--out",
            str(out),
            "--requests",
            "6000",
            "--fault",
            "all",
            "--fault-rate",
            "0.02",
            "--partitions",
            "3",
            "--seed",
            "11",
        ]
    )
    assert code == 0
    return out


def _key(alert: dict[str, Any]) -> tuple[object, object]:
    """(rule, request id) or, for windowed findings, (rule, what it is about)."""
    return alert["rule"], alert["request_id"] or alert["details"]["key"]


def _replay(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, [orjson.loads(line) for line in out.splitlines() if line], err


def test_replay_finds_every_injected_fault_and_nothing_else(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = load_truth(str(scenario / "truth.json"))
    files = sorted(str(p) for p in scenario.glob("events-p*.jsonl.gz"))
    code, alerts, err = _replay(
        ["--policy", str(scenario / "policy.toml"), "--ground-truth", str(scenario / "truth.json"), *files], capsys
    )
    assert code == 0
    found = {_key(a) for a in alerts}
    assert found == set(truth.expected)
    assert {rule for rule, _ in found} == {
        "incomplete_request_disclosure",
        "missing_legal_basis_disclosure",
        "weak_match_disclosure",
        "unpermitted_field",
        "restricted_disclosure",
        "outside_agreement_period",
        "unauthorized_party",
        "subject_mismatch",
        "orphan_disclosure",
        "duplicate_disclosure",
        "response_sla_breach",
        "disposal_overdue",
    }
    assert "missed 0, unexpected 0" in err
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_alerts_follow_the_spec_and_carry_no_personal_data(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in scenario.glob("events-p*.jsonl.gz"))
    _, alerts, _ = _replay(
        ["--policy", str(scenario / "policy.toml"), "--ground-truth", str(scenario / "truth.json"), *files], capsys
    )
    keys = {
        "alert_id",
        "rule",
        "severity",
        "agreement_id",
        "request_id",
        "requester",
        "event_time",
        "detected_at",
        "summary",
        "subject_ref",
        "details",
        "status",
    }
    assert all(set(a) == keys for a in alerts)
    people = set()
    for path in files:
        for line in gzip.open(path):
            event = orjson.loads(line)
            subject = event.get("subject") or {}
            people |= {subject.get("name", {}).get("last"), subject.get("dob")}
            people |= set((subject.get("address") or {}).get("street", "x").split()[1:2])
    people.discard(None)
    text = orjson.dumps(alerts).decode()
    leaked = [value for value in people if value and len(value) > 3 and f'"{value}' in text]
    assert leaked == []


def test_stdin_with_a_reorder_buffer_spanning_concatenated_partitions(
    scenario: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = b"".join(gzip.open(p).read() for p in sorted(scenario.glob("events-p*.jsonl.gz")))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(lines))))
    code, alerts, _ = _replay(
        [
            "--policy",
            str(scenario / "policy.toml"),
            "--ground-truth",
            str(scenario / "truth.json"),
            "--max-disorder",
            "60d",
            "-",
        ],
        capsys,
    )
    truth = load_truth(str(scenario / "truth.json"))
    assert code == 0 and {_key(a) for a in alerts} == set(truth.expected)


def test_pipes_are_read_like_files_and_a_directory_is_refused(
    tmp_path: Path, scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(str(p) for p in scenario.glob("events-p*.jsonl.gz"))
    policy, truth = str(scenario / "policy.toml"), str(scenario / "truth.json")
    expected = set(load_truth(truth).expected)
    # bash's process substitution, as an auditor would type it: the log arrives on /dev/fd/N, a pipe.
    command = (
        f"{shlex.quote(sys.executable)} -m monitor.cli replay --policy {shlex.quote(policy)} --ground-truth "
        f"{shlex.quote(truth)} " + " ".join(f"<(gzip -dc {shlex.quote(path)})" for path in files)
    )
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert {_key(orjson.loads(line)) for line in run.stdout.splitlines()} == expected
    assert "missed 0, unexpected 0" in run.stderr
    # A named pipe: a default replay reads it in process; asking for a reading process is a usage error.
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(gzip.open(files[0]).read()))
    writer.start()
    code, alerts, err = _replay(["--policy", policy, str(fifo)], capsys)
    writer.join()
    assert code == 0 and alerts and "replayed " in err
    assert main(["replay", "--policy", policy, "--read-ahead", str(fifo)]) == 2
    assert f"--read-ahead cannot read {fifo}, which is not a regular file" in capsys.readouterr().err
    assert main(["replay", "--policy", policy, str(scenario)]) == 2
    assert f"{scenario} is a directory" in capsys.readouterr().err


def test_invalid_lines_are_dead_lettered_with_position(
    tmp_path: Path, scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mixed.jsonl"
    good = gzip.open(scenario / "events-p0.jsonl.gz").read().splitlines()[:50]
    log.write_bytes(
        b"\n".join([good[0], b"{broken", *good[1:10], b'{"type":"request"}', b"", b"x" * 70_000, *good[10:]]) + b"\n"
    )
    dead = tmp_path / "dead.jsonl"
    code, _, err = _replay(["--policy", str(scenario / "policy.toml"), "--dead-letter", str(dead), str(log)], capsys)
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert code == 0
    assert [(r["reason"], r["line"]) for r in records] == [
        ("invalid_json", 2),
        ("missing_field:request_id", 12),
        ("oversized", 14),
    ]
    assert all(r["source"] == str(log) for r in records)
    assert "invalid: 3" in err and "replayed 50 events" in err
    assert "join state at the end: " in err


def test_fail_on_and_until(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in scenario.glob("events-p*.jsonl.gz"))
    policy = str(scenario / "policy.toml")
    code, alerts, _ = _replay(["--policy", policy, "--fail-on", "critical", *files], capsys)
    assert code == 1
    assert "response_sla_breach" in {a["rule"] for a in alerts}  # SLA deadlines fall inside the log
    code_until, alerts_until, _ = _replay(["--policy", policy, "--until", "2026-01-01T00:00:00Z", *files], capsys)
    assert code_until == 0
    assert len(alerts_until) > len(alerts)  # the late orphans and disposal deadlines fire only with --until


def test_usage_and_config_errors_exit_2(tmp_path: Path, scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[[agreement]]\nid = "x"\nrequesters = ["A"]\ndisclosers = ["B"]\neffective_from = 2025-01-01\n'
        'response_sla = "soon"\n'
    )
    assert main(["replay", "--policy", str(broken), str(scenario / "events-p0.jsonl.gz")]) == 2
    assert f"{broken}: line 6: agreement[0] (x).response_sla" in capsys.readouterr().err
    assert main(["replay", "--policy", str(scenario / "policy.toml"), str(tmp_path / "missing.jsonl")]) == 2
    assert main(["policy", "check", str(broken)]) == 2
    assert main(["policy", "check", str(scenario / "policy.toml")]) == 0
    assert "tax-enforcement-2025" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["replay"])
    assert exit_info.value.code == 2


def test_simulate_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert (
            main(["simulate", "--out", str(tmp_path / name), "--requests", "500", "--fault", "all", "--seed", "5"]) == 0
        )
    first, second = (gzip.open(tmp_path / n / "events.jsonl.gz").read() for n in ("a", "b"))
    assert first == second
    assert (tmp_path / "a" / "truth.json").read_bytes() == (tmp_path / "b" / "truth.json").read_bytes()


def test_irs_ice_preset_follows_the_public_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "irs-ice-2025", "--requests", "12800", "--out", str(tmp_path)]) == 0
    truth = load_truth(str(tmp_path / "truth.json"))
    improper = [key for key in truth.expected if key[0] == "incomplete_request_disclosure"]
    assert len(improper) == 427  # 42,695 of 1,280,000, scaled to 12,800
    assert {key for key in truth.expected if key not in improper} == {
        ("oversized_batch", "batch:ice-batch-2025-06"),
        ("daily_cap_exceeded", "agreement:irs-ice-2025"),
    }
    events = [orjson.loads(line) for line in gzip.open(tmp_path / "events.jsonl.gz")]
    disclosed = [e for e in events if e.get("disclosed")]
    assert len(disclosed) == 473  # 47,289 scaled
    assert all(e["responded_at"].startswith("2025-08-07") for e in disclosed)
    _code, alerts, err = _replay(
        [
            "--policy",
            str(tmp_path / "policy.toml"),
            "--ground-truth",
            str(tmp_path / "truth.json"),
            str(tmp_path / "events.jsonl.gz"),
        ],
        capsys,
    )
    assert {_key(a) for a in alerts} == set(truth.expected)
    assert "first alert at stream time 2025-08-07" in err and "declared in court on 2026-02-11" in err
    assert "first alert of all: oversized_batch at stream time 2025-06-16" in err  # the batch, in June


def test_windowed_faults_are_found_and_nothing_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--requests",
                "30000",
                "--days",
                "24",
                "--seed",
                "4",
                "--fault",
                "all-windowed",
                "--partitions",
                "2",
            ]
        )
        == 0
    )
    truth = load_truth(str(tmp_path / "truth.json"))
    assert {rule for rule, _ in truth.expected} == {
        "disclosure_rate_spike",
        "disclosure_ratio_drift",
        "oversized_batch",
        "daily_cap_exceeded",
    }
    _code, alerts, _ = _replay(
        [
            "--policy",
            str(tmp_path / "policy.toml"),
            "--ground-truth",
            str(tmp_path / "truth.json"),
            *sorted(str(p) for p in tmp_path.glob("events-p*.jsonl.gz")),
        ],
        capsys,
    )
    firing = [a for a in alerts if a["status"] == "firing"]
    assert {_key(a) for a in firing} == set(truth.expected)
    for alert in firing:  # windowed findings carry their window, the observed value and the baseline or cap
        assert {"key", "observed"} <= set(alert["details"]) and alert["request_id"] is None
    resolved = {a["alert_id"] for a in alerts if a["status"] == "resolved"}
    spikes = {a["alert_id"] for a in firing if a["rule"] == "disclosure_rate_spike"}
    assert spikes <= resolved  # a spike that ended is closed under the same id
