"""The chaos harness, CI-sized: two runs of bench/chaos.py with fixed seeds whose schedules between them
apply every kind of fault (SIGKILL and SIGTERM restarts, a second worker joining and leaving, a broker stop
and start, a SIGHUP reload), publishing with kcat in one and aiokafka in the other. Every run's alerts must
equal a replay's of what was published, and so must the ledger of disclosures the workers kept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.live.conftest import ENV

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"
SEEDS = (1, 4)  # see the docstring: together they apply every fault and both publishers


def test_live_workers_under_every_fault_find_what_a_replay_finds(kafka_bootstrap: str, tmp_path: Path) -> None:
    del kafka_bootstrap  # the harness uses the same broker, through deploy/local/kafka.sh
    lines = []
    for seed in SEEDS:
        result = subprocess.run(
            [sys.executable, str(CHAOS), "--runs", "1", "--seed", str(seed), "--keep", str(tmp_path)],
            capture_output=True, text=True, timeout=900, env=ENV,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        lines.append(result.stdout.splitlines()[0])
    runs = "\n".join(lines)
    assert all(re.search(r"expected [1-9]\d*, missing 0, extra 0", line) for line in lines), runs
    ledger = r"ledger [1-9]\d* entries, missing 0, extra 0, repeated 0, verified"
    assert all(re.search(ledger, line) for line in lines), runs  # each disclosure accounted once, as a replay
    for fault in ("sigkill", "sigterm", "join", "leave", "broker", "sighup", "kcat", "aiokafka"):
        assert fault in runs, f"no {fault} in:\n{runs}"
