"""Real Prometheus and Alertmanager (Debian's packages, installed by deploy/local/tools.sh) on loopback for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_sum(exposition: str, prefix: str, containing: str = "") -> float:
    """The sum of the samples in a Prometheus text exposition whose line starts with ``prefix``."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith(prefix) and containing in line
    )


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} missing: `make setup` installs it (deploy/local/tools.sh)"
    return path


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: exited {process.returncode}\n{log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {seconds} s\n{log.read_text()[-2000:]}")


@contextmanager
def daemon(argv: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def alertmanager(
    workdir: Path, port: int | None = None, config: Path = REPO / "deploy/alertmanager/alertmanager.yml"
) -> Iterator[str]:
    """A real Alertmanager with the shipped config on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    storage = workdir / f"alertmanager-{port}"
    storage.mkdir(parents=True, exist_ok=True)
    argv = [
        tool("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--storage.path={storage}",
    ]
    with daemon(argv, f"http://127.0.0.1:{port}/-/ready", storage / "log"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def prometheus(workdir: Path, config: Path) -> Iterator[str]:
    """A real Prometheus with ``config`` on 127.0.0.1; yields its base URL."""
    port = free_port()
    storage = workdir / f"prometheus-{port}"
    storage.mkdir(parents=True, exist_ok=True)
    argv = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={storage}",
        "--web.enable-lifecycle",
    ]
    with daemon(argv, f"http://127.0.0.1:{port}/-/ready", storage / "log"):
        yield f"http://127.0.0.1:{port}"
