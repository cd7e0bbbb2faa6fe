"""What each command-line option accepts: argparse ``type=`` functions whose error says why not.

argparse turns their :class:`argparse.ArgumentTypeError` into ``dismon CMD: error: argument --opt: ...``
and exit 2. They also check a default given as a string (the worker's ``$DISMON_*`` settings).
"""

from __future__ import annotations

import argparse
import urllib.parse

from monitor.core.timeutil import parse_duration_ms, parse_time_ms


def duration(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {text!r}")
    return int(text)


def idle_after(text: str) -> int | None:
    return None if text == "off" else duration(text)


def session_timeout(text: str) -> int:
    ms = duration(text)
    if not 6_000 <= ms <= 1_800_000:  # Kafka's default group.min.session.timeout.ms and its maximum
        raise argparse.ArgumentTypeError(f"{text!r} is outside what brokers accept by default (6s to 30m)")
    return ms


def http_url(text: str) -> str:
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r} (e.g. http://127.0.0.1:9093)")
    return text


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"not a share between 0 (exclusive) and 1: {text!r}")
    return value


def timestamp(text: str) -> int:
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
