"""The accounting of disclosures: ``replay --ledger`` and ``dismon ledger``. Every disclosure gets one entry,
the same whichever way the replay reads; editing, deleting or reordering an entry makes verify fail naming
it; lookup finds exactly one person's disclosures; export's totals are the replay summary's; nothing
personal is written."""

from __future__ import annotations

import gzip
import io
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.cli import main
from monitor.core import merkle
from monitor.core.ledger import read_record, record_bytes
from monitor.outputs.ledger import Frontier
from tests.conftest import TEST_KEY
from tests.pii import leaks, personal_values


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ledger")
    assert main(["simulate", "--out", str(directory), "--requests", "2000", "--fault", "all", "--seed", "4",
                 "--fault-rate", "0.05"]) == 0  # fmt: skip
    assert main(["ledger", "keygen", "--private", str(directory / "key"), "--public", str(directory / "pub")]) == 0
    return directory


@pytest.fixture(autouse=True)
def _subject_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISMON_SUBJECT_KEY", TEST_KEY.decode())


def _replay(scenario: Path, ledger: Path, *extra: str) -> None:
    assert main(["replay", "--policy", str(scenario / "policy.toml"), "--alerts-out", str(ledger.parent / "alerts"),
                 "--ledger", str(ledger), "--ledger-key", str(scenario / "key"), "--until", "2100-01-01",
                 *extra, str(scenario / "events.jsonl.gz")]) == 0  # fmt: skip


def _verify(ledger: Path, scenario: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["ledger", "verify", str(ledger), "--public-key", str(scenario / "pub"), *extra])
    return code, capsys.readouterr().out


def _ids(ledger: Path) -> list[str]:
    return [read_record(line).id for line in (ledger / "entries.jsonl").read_bytes().splitlines()]


def test_every_disclosure_is_accounted_once_however_the_replay_reads(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline, ahead = tmp_path / "inline" / "ledger", tmp_path / "ahead" / "ledger"
    _replay(scenario, inline, "--no-read-ahead", "--summary-out", str(tmp_path / "summary.json"))
    _replay(scenario, ahead, "--read-ahead")
    assert sorted(_ids(inline)) == sorted(_ids(ahead)) and len(set(_ids(inline))) == len(_ids(inline))
    assert _verify(inline, scenario, capsys)[0] == 0
    # A run of the same pipeline again appends nothing: the same disclosures, judged the same, have the same ids.
    before = (inline / "entries.jsonl").read_bytes()
    _replay(scenario, inline, "--no-read-ahead")
    assert (inline / "entries.jsonl").read_bytes() == before
    assert len((inline / "checkpoints.jsonl").read_bytes().splitlines()) == 2
    code, out = _verify(inline, scenario, capsys)
    assert code == 0 and "2 checkpoint(s)" in out
    # Export's totals are the replay summary's disclosures, and its improper ones.
    assert main(["ledger", "export", str(inline), "--public-key", str(scenario / "pub")]) == 0
    export = orjson.loads(capsys.readouterr().out)
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert export["entries_total"] == sum(total for _day, total, _improper in summary["disclosures_by_day"]) > 0
    improper = sum(improper for _day, _total, improper in summary["disclosures_by_day"])
    assert export["counts"]["verdict"]["improper"] == improper > 0
    assert sum(export["counts"]["agreement"].values()) == export["entries_total"]
    # A period: only the entries of disclosures in it.
    first_day = summary["disclosures_by_day"][0][0]
    assert main(["ledger", "export", str(inline), "--public-key", str(scenario / "pub"), "--from", first_day,
                 "--to", f"{first_day}T23:59:59.999Z", "--format", "csv"]) == 0  # fmt: skip
    csv_out = capsys.readouterr().out
    assert f"verdict,proper,{summary['disclosures_by_day'][0][1] - summary['disclosures_by_day'][0][2]}" in csv_out


def _tampered(scenario: Path, tmp_path: Path, change: Any) -> Path:
    ledger = tmp_path / "tampered"
    shutil.copytree(tmp_path / "ledger", ledger)
    lines = (ledger / "entries.jsonl").read_bytes().splitlines()
    (ledger / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in change(lines)))
    return ledger


def _edit(line: bytes, recompute: bool) -> bytes:
    record = orjson.loads(line)
    record["entry"]["findings"] = []  # an improper disclosure made to look proper
    if not recompute:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    import msgspec

    from monitor.core.ledger import AccountingEntry

    entry = msgspec.convert(record["entry"], AccountingEntry)
    return record_bytes(record["seq"], entry.entry_id, entry)


def test_editing_deleting_or_reordering_an_entry_fails_verify_naming_it(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    _replay(scenario, ledger)
    lines = (ledger / "entries.jsonl").read_bytes().splitlines()
    target = next(i for i, line in enumerate(lines) if read_record(line).entry.findings)
    cases = {
        "edited": (lambda ls: [*ls[:target], _edit(ls[target], False), *ls[target + 1 :]], f"entry {target} "),
        "deleted": (lambda ls: ls[:target] + ls[target + 1 :], f"entry {target} says it is entry {target + 1}"),
        "reordered": (lambda ls: [*ls[:target], ls[target + 1], ls[target], *ls[target + 2 :]], f"entry {target} "),
        "the last dropped": (lambda ls: ls[:-1], f"entries {len(lines) - 1}..{len(lines) - 1} were deleted"),
        # Rewritten as the ledger would write it, id and all: the signed checkpoint still catches it.
        "edited with its id": (
            lambda ls: [*ls[:target], _edit(ls[target], True), *ls[target + 1 :]],
            f"one of entries 0..{len(lines) - 1} was changed",
        ),
    }
    for name, (change, named) in cases.items():
        code, out = _verify(_tampered(scenario, tmp_path, change), scenario, capsys)
        assert code == 1 and "does NOT verify" in out and named in out, (name, out)
        shutil.rmtree(tmp_path / "tampered")
    # A checkpoint signed by another key, or altered, fails too.
    ledger_copy = tmp_path / "forged"
    shutil.copytree(ledger, ledger_copy)
    checkpoint = orjson.loads((ledger_copy / "checkpoints.jsonl").read_bytes())
    checkpoint["size"] -= 1
    (ledger_copy / "checkpoints.jsonl").write_bytes(orjson.dumps(checkpoint) + b"\n")
    code, out = _verify(ledger_copy, scenario, capsys)
    assert code == 1 and "signature does not verify" in out


def test_a_kept_checkpoint_proves_later_runs_only_appended(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    lines = gzip.open(scenario / "events.jsonl.gz").read().splitlines()
    half = len(lines) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"\n".join(lines[:half]) + b"\n")
    second.write_bytes(b"\n".join(lines[half:]) + b"\n")
    for part in (first, second):
        assert main(["replay", "--policy", str(scenario / "policy.toml"), "--alerts-out", str(tmp_path / "a"),
                     "--ledger", str(ledger), "--ledger-key", str(scenario / "key"), str(part)]) == 0  # fmt: skip
        if part == first:
            kept = tmp_path / "kept.json"
            kept.write_bytes((ledger / "checkpoints.jsonl").read_bytes())
    code, out = _verify(ledger, scenario, capsys, "--against", str(kept))
    assert code == 0 and "consistent with the kept checkpoint" in out
    # The first run's entries rewritten whole (ids, seqs and checkpoints re-signed by the insider's own key would
    # need the key; here the checkpoints are dropped): the kept checkpoint catches it.
    entries = (ledger / "entries.jsonl").read_bytes().splitlines()
    (ledger / "entries.jsonl").write_bytes(b"".join(_edit(e, True) + b"\n" for e in entries))
    (ledger / "checkpoints.jsonl").write_bytes(b"")
    code, out = _verify(ledger, scenario, capsys, "--against", str(kept))
    assert code == 1 and "not consistent with the kept checkpoint" in out


def test_lookup_finds_exactly_a_persons_disclosures_with_valid_proofs(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger"
    _replay(scenario, ledger)
    events = [orjson.loads(line) for line in gzip.open(scenario / "events.jsonl.gz").read().splitlines()]
    disclosing = {e["request_id"] for e in events if e["type"] == "response" and e.get("disclosed")}
    person_of = {e["request_id"]: (e["subject"]["name"], e["subject"].get("dob")) for e in events
                 if e["type"] == "request"}  # fmt: skip
    name, dob = next(person_of[r] for r in sorted(disclosing) if r in person_of)
    expected = {r for r in disclosing if person_of.get(r) == (name, dob)}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(orjson.dumps({"name": name, "dob": dob}))))
    assert main(["ledger", "lookup", str(ledger), "--public-key", str(scenario / "pub")]) == 0
    out = capsys.readouterr()
    found = [orjson.loads(line) for line in out.out.splitlines()]
    assert {f["request_id"] for f in found} == expected
    assert all(f["inclusion"] == "verified" for f in found)
    assert not leaks(out.out + out.err, {name["last"], dob})


def test_no_personal_data_in_any_ledger_output(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    _replay(scenario, ledger)
    assert main(["ledger", "export", str(ledger), "--public-key", str(scenario / "pub"), "--format", "csv"]) == 0
    written = (ledger / "entries.jsonl").read_text() + (ledger / "checkpoints.jsonl").read_text()
    assert not leaks(written + capsys.readouterr().out, personal_values(scenario / "events.jsonl.gz"))


def test_the_frontier_root_is_the_rfc_root_at_every_size() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(70)]
    frontier = Frontier()
    assert frontier.root() == merkle.root([])
    for size, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.root() == merkle.root(leaves[:size])


def test_keys_come_from_files_or_the_environment_and_bad_ones_are_refused_clearly(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISMON_LEDGER_KEY", (scenario / "key").read_text())
    monkeypatch.setenv("DISMON_LEDGER_PUBLIC_KEY", (scenario / "pub").read_text())
    ledger = tmp_path / "ledger"
    assert main(["replay", "--policy", str(scenario / "policy.toml"), "--alerts-out", str(tmp_path / "a"),
                 "--ledger", str(ledger), str(scenario / "events.jsonl.gz")]) == 0  # fmt: skip
    assert main(["ledger", "verify", str(ledger)]) == 0
    capsys.readouterr()
    # The public key where the signing key belongs, a key file that exists already, no key at all.
    assert main(["replay", "--policy", str(scenario / "policy.toml"), "--alerts-out", str(tmp_path / "a"),
                 "--ledger", str(ledger), "--ledger-key", str(scenario / "pub"), str(scenario / "events.jsonl.gz")]) == 2  # fmt: skip
    assert f"cannot read the ledger signing key from {scenario / 'pub'}" in capsys.readouterr().err
    assert main(["ledger", "keygen", "--private", str(scenario / "key"), "--public", str(tmp_path / "p")]) == 2
    assert "is never overwritten" in capsys.readouterr().err
    monkeypatch.delenv("DISMON_LEDGER_KEY")
    assert main(["replay", "--policy", str(scenario / "policy.toml"), "--alerts-out", str(tmp_path / "a"),
                 "--ledger", str(ledger), str(scenario / "events.jsonl.gz")]) == 2  # fmt: skip
    assert "--ledger needs the checkpoints' signing key" in capsys.readouterr().err
