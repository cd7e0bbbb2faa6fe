"""What the commands share: exit codes, the log, and ``$DISMON_*`` settings."""

from __future__ import annotations

import logging
import os
import time

EXIT_OK, EXIT_ALERTS, EXIT_USAGE = 0, 1, 2


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


EXIT_TERMINATED = 143  # 128 + SIGTERM


log = logging.getLogger("dismon")


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"DISMON_{name}", default)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
