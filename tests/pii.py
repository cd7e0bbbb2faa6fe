"""The personal-data scan: the scenario's names, streets, zips and dates of birth, searched for in any output."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import orjson


def personal_values(events_file: Path) -> set[str]:
    """Every name, street, zip and date of birth of the scenario's subjects (and disclosed records)."""
    values: set[str] = set()
    with gzip.open(events_file) as log:
        for line in log:
            event = orjson.loads(line)
            subject = event.get("subject") or {}
            name, address = subject.get("name") or {}, subject.get("address") or {}
            disclosed = (event.get("disclosed") or {}).get("address") or {}
            for value in (
                name.get("last"),
                name.get("first"),
                address.get("street"),
                address.get("zip"),
                subject.get("dob"),
                disclosed.get("street") if isinstance(disclosed, dict) else None,
            ):
                if isinstance(value, str) and len(value) >= 5 and any(c.isdigit() for c in value) | (" " in value):
                    values.add(value)  # house-number streets, zips, dates: specific enough to scan for
                elif isinstance(value, str) and len(value) >= 4 and value[0].isupper():
                    values.add(value)  # names
    return values


def leaks(text: str, values: set[str]) -> list[str]:
    # A substring test first: the pattern only for the few values that occur at all.
    return sorted(v for v in values if v in text and re.search(rf"(?<![\w.-]){re.escape(v)}(?![\w-])", text))
