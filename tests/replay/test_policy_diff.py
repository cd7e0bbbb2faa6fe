"""dismon policy diff: one pass over the logs under two policies gives exactly the difference of two replays,
and can gate a change that would lose findings."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from monitor.cli import main


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario with every fault; NEW drops the daily cap (losing those findings) and permits one field
    fewer (adding unpermitted_field findings)."""
    directory = tmp_path_factory.mktemp("diff")
    assert main(["simulate", "--out", str(directory), "--requests", "3000", "--fault", "all", "--fault",
                 "all-windowed", "--fault-rate", "0.03", "--seed", "4"]) == 0  # fmt: skip
    old = (directory / "policy.toml").read_text()
    new = old.replace(
        'permitted_fields = ["address", "name", "employer"]', 'permitted_fields = ["address", "employer"]'
    )
    new = "\n".join(line for line in new.splitlines() if not line.startswith("max_disclosures_per_day"))
    assert new != old
    (directory / "new.toml").write_text(new + "\n")
    return directory


def _replayed(directory: Path, policy: str) -> set[tuple[str, str]]:
    out = directory / f"{policy}.alerts.jsonl"
    assert main(["replay", "--policy", str(directory / policy), "--alerts-out", str(out),
                 str(directory / "events.jsonl.gz")]) == 0  # fmt: skip
    return {(a["alert_id"], a["status"]) for a in map(orjson.loads, out.read_bytes().splitlines())}


def test_the_diff_equals_the_difference_of_two_replays(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _replayed(policies, "policy.toml"), _replayed(policies, "new.toml")
    capsys.readouterr()
    out = policies / "diff.jsonl"
    assert main(["policy", "diff", str(policies / "policy.toml"), str(policies / "new.toml"),
                 str(policies / "events.jsonl.gz"), "--out", str(out)]) == 0  # fmt: skip
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    added = {(a["alert_id"], a["status"]) for a in lines if a["change"] == "added"}
    removed = {(a["alert_id"], a["status"]) for a in lines if a["change"] == "removed"}
    assert added == new - old and removed == old - new
    assert "unpermitted_field" in {a["rule"] for a in lines if a["change"] == "added"}  # (and disposals owed)
    assert "daily_cap_exceeded" in {a["rule"] for a in lines if a["change"] == "removed"}
    printed = capsys.readouterr().out
    assert f"{len(added):,} added, {len(removed):,} lost" in printed
    assert "lost" in printed and "daily_cap_exceeded (critical)" in printed


def test_a_change_that_loses_critical_findings_fails_the_gate(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "policy",
        "diff",
        str(policies / "policy.toml"),
        str(policies / "new.toml"),
        str(policies / "events.jsonl.gz"),
    ]
    assert main([*args, "--fail-on-lost", "critical"]) == 1
    assert "loses" in capsys.readouterr().err
    # The other way round only adds findings: the gate passes.
    back = ["policy", "diff", str(policies / "new.toml"), str(policies / "new.toml"), str(policies / "events.jsonl.gz")]
    assert main([*back, "--fail-on-lost", "info"]) == 0
    assert "0 added, 0 lost" in capsys.readouterr().out


def test_a_replay_under_a_file_of_versions_judges_each_period_by_its_own(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scenario's agreement split into two versions on 9 June: from then on names may not be disclosed."""
    text = (policies / "policy.toml").read_text()
    start = text.index('[[agreement]]\nid = "tax-enforcement-2025"')
    end = text.index("[[agreement]]", start + 10)
    block = text[start:end]
    v1 = block.replace(
        "effective_from = 2025-06-02\n", 'version = "v1"\neffective_from = 2025-06-02\neffective_until = 2025-06-08\n'
    )
    v2 = block.replace("effective_from = 2025-06-02\n", 'version = "v2"\neffective_from = 2025-06-09\n').replace(
        'permitted_fields = ["address", "name", "employer"]', 'permitted_fields = ["address", "employer"]'
    )
    assert v1 != block and v2 != block
    (policies / "versions.toml").write_text(text[:start] + v1 + v2 + text[end:])
    out = policies / "versions.alerts.jsonl"
    assert main(["replay", "--policy", str(policies / "versions.toml"), "--alerts-out", str(out),
                 str(policies / "events.jsonl.gz")]) == 0  # fmt: skip
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    ours = [a for a in alerts if a["agreement_id"] == "tax-enforcement-2025"]
    boundary = "2025-06-09T00:00:00Z"
    assert all(a["details"]["policy_version"] == ("v2" if a["event_time"] >= boundary else "v1") for a in ours
               if a["rule"] not in ("response_sla_breach", "disposal_overdue") and a["request_id"])  # fmt: skip
    names = [a for a in ours if a["rule"] == "unpermitted_field" and "name" in a["details"]["unpermitted_fields"]]
    assert names and all(a["event_time"] >= boundary for a in names)
    single = {
        (a["alert_id"], a["status"])
        for a in map(orjson.loads, (policies / "policy.toml.alerts.jsonl").read_bytes().splitlines())
    }
    before = {(a["alert_id"], a["status"]) for a in alerts if a["event_time"] < boundary}
    assert before <= single  # before the boundary, the same findings as under the one-version file


def test_the_diff_read_ahead_in_a_second_process_equals_the_diff_in_one(policies: Path) -> None:
    from monitor.config import load_policy
    from monitor.core.detector import Detector
    from monitor.core.findings import SubjectHasher
    from monitor.replay.diff import run_diff
    from monitor.replay.sources import ReadOptions
    from tests.conftest import TEST_KEY

    def diff(read_ahead: bool) -> tuple[set[str], set[str], int]:
        old, new = (Detector(load_policy(str(policies / p)), SubjectHasher(TEST_KEY), 600_000)
                    for p in ("policy.toml", "new.toml"))  # fmt: skip
        result = run_diff([str(policies / "events.jsonl.gz")], old, new, lambda _letter: None,
                          ReadOptions(600_000), read_ahead=read_ahead)  # fmt: skip
        return {f.alert_id for f in result.added}, {f.alert_id for f in result.removed}, result.events

    in_one, read_ahead = diff(False), diff(True)
    assert in_one == read_ahead and in_one[0] and in_one[1] and in_one[2] > 6000
