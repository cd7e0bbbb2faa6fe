"""What the commands share: exit codes, the log, ``$DISMON_*`` settings, and files read and written whole."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from monitor.errors import UsageError

EXIT_OK, EXIT_ALERTS, EXIT_USAGE = 0, 1, 2


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


EXIT_TERMINATED = 143  # 128 + SIGTERM


log = logging.getLogger("dismon")


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"DISMON_{name}", default)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def read_file(path: str) -> bytes:
    """A whole input file; one that cannot be read is a usage error naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def write_file(path: str, data: bytes) -> None:
    """A whole output file; one that cannot be written is a usage error naming it."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
