"""`make live` in its short, non-interactive form: every finding arrives on the alerts topic and equals
replay's, Prometheus fires DisclosureFindingCritical, Alertmanager has it, and nothing is left running."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

from tests.live.conftest import consume_all
from tests.services import REPO


def test_the_live_demo_shows_detection_end_to_end_and_cleans_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy/local/live.py"), "--requests", "2000", "--seconds", "6", "--exit",
         "--no-view", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert re.search(r"live findings vs replay\s*│\s*(\d[\d,]*) vs \1: equal", out), out[-3000:]
    assert "DisclosureFindingCritical firing" in out and "has DisclosureFindingCritical" in out
    prefix = re.search(r"topics (live-[0-9a-f]+)\.\*", out)
    assert prefix is not None
    alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix.group(1)}.alerts"))
    replayed = (tmp_path / "replay-alerts.jsonl").read_bytes().splitlines()
    assert {(a["alert_id"], a["status"]) for _, a in alerts} == {
        (r["alert_id"], r["status"]) for r in map(orjson.loads, replayed)
    }
    assert len(replayed) > 20
    started = re.search(r"started: (.*)", out)
    assert started is not None
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", started.group(1))]
    assert len(pids) == 3
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} started by the demo is still running")
