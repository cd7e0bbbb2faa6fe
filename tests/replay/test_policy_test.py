"""dismon policy test: the shipped test files pass, a wrong expectation fails (also in JUnit XML), a broken
test file is a usage error, and the shipped policies are the simulator's presets."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

from monitor.cli import main

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_the_shipped_policy_tests_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in POLICIES.glob("*.test.toml"))
    assert len(files) == 2
    assert main(["policy", "test", *files, "--junit-xml", str(tmp_path / "junit.xml")]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "12 passed, 0 failed" in out
    suites = ElementTree.parse(tmp_path / "junit.xml").getroot().findall("testsuite")
    assert [int(s.get("tests", 0)) for s in suites] == [6, 6] and all(s.get("failures") == "0" for s in suites)


def test_a_wrong_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(POLICIES / "irs-ice-2025.toml", tmp_path)
    text = (POLICIES / "irs-ice-2025.test.toml").read_text()
    wrong = text.replace(
        'expect = [{ rule = "unpermitted_field", request_id = "t4"',
        'expect = [{ rule = "unpermitted_field", request_id = "t1"',
    )
    wrong = wrong.replace(
        'absent = [{ rule = "unpermitted_field" }, { rule = "orphan_disclosure" }]',
        'absent = [{ rule = "incomplete_request_disclosure" }]',
    )
    assert wrong.count("t1") > text.count("t1")
    (tmp_path / "wrong.test.toml").write_text(wrong)
    assert main(["policy", "test", str(tmp_path / "wrong.test.toml"), "--junit-xml", str(tmp_path / "j.xml")]) == 1
    out = capsys.readouterr().out
    assert "4 passed, 2 failed" in out
    assert (
        "expected rule=unpermitted_field request_id=t1 severity=critical status=firing: not found (found: unpermitted_field/t4/firing)"
        in out
    )
    assert "expected no rule=incomplete_request_disclosure: found" in out
    failures = ElementTree.parse(tmp_path / "j.xml").getroot().findall(".//failure")
    assert len(failures) == 2


def test_a_broken_test_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.test.toml").write_text('[[case]]\nname = "no policy"\n')
    assert main(["policy", "test", str(tmp_path / "a.test.toml")]) == 2
    assert "'policy'" in capsys.readouterr().err
    shutil.copy(POLICIES / "default.toml", tmp_path)
    (tmp_path / "b.test.toml").write_text('policy = "default.toml"\n[[case]]\nevents = "{not json"\nexpect = []\n')
    assert main(["policy", "test", str(tmp_path / "b.test.toml")]) == 1
    assert "malformed: event 1 is invalid (invalid_json)" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "scenario"), [("irs-ice-2025.toml", "irs-ice-2025"), ("default.toml", "default")])
def test_the_shipped_policies_are_the_simulators_presets(name: str, scenario: str, tmp_path: Path) -> None:
    assert (
        main(
            [
                "simulate",
                "--scenario",
                scenario,
                "--out",
                str(tmp_path),
                "--requests",
                "100000" if scenario == "irs-ice-2025" else "20000",
            ]
        )
        == 0
    )
    assert (tmp_path / "policy.toml").read_text() == (POLICIES / name).read_text()
