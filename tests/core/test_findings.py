"""The keyed subject hash and its key handling; deterministic alert ids."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from monitor import config
from monitor.cli import main
from monitor.config import KEY_ENV, KEY_FILE_ENV
from monitor.core.findings import SubjectHasher, make_alert_id
from monitor.errors import UsageError

KEY = b"0123456789abcdef0123456789abcdef"


def test_subject_ref_is_keyed_blake2b_under_the_key() -> None:
    expected = hashlib.blake2b(b"garcia\x1fana\x1f1980-01-02", key=KEY, digest_size=8).digest()
    assert SubjectHasher(KEY).ref("garcia", "ana", "1980-01-02") == int.from_bytes(expected, "big")
    # Without the key, a dictionary of names and dates gives other values: the ref depends on the key.
    assert SubjectHasher(KEY[::-1]).ref("garcia", "ana", "1980-01-02") != SubjectHasher(KEY).ref(
        "garcia", "ana", "1980-01-02"
    )


def test_keys_longer_than_blake2b_takes_are_hashed_first() -> None:
    long_key = bytes(range(100))
    expected = hashlib.blake2b(b"garcia", key=hashlib.blake2b(long_key).digest(), digest_size=8).digest()
    assert SubjectHasher(long_key).ref("garcia") == int.from_bytes(expected, "big")
    assert SubjectHasher(long_key).ref("garcia") != SubjectHasher(long_key[:64]).ref("garcia")


def test_short_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="at least 16"):
        SubjectHasher(b"too-short")
    key_file = tmp_path / "key"
    key_file.write_bytes(b"short\n")
    with pytest.raises(UsageError, match="at least 16"):
        config.subject_hasher({KEY_FILE_ENV: str(key_file)})
    with pytest.raises(UsageError, match="cannot read subject key file"):
        config.subject_hasher({KEY_FILE_ENV: str(tmp_path / "missing")})
    assert main(["policy", "check", "/nonexistent.toml"]) == 2  # usage errors exit 2 (the same path as a bad key)


def test_key_from_file_wins_and_a_missing_key_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    from_file = config.subject_hasher({KEY_FILE_ENV: str(key_file), KEY_ENV: "another-key-0123456789"})
    assert from_file.ref("x") == SubjectHasher(KEY).ref("x")
    with caplog.at_level(logging.WARNING):
        one, two = config.subject_hasher({}), config.subject_hasher({})
    assert "random per-run key" in caplog.text
    assert one.ref("x") != two.ref("x")


def test_alert_ids_depend_on_what_not_when_and_not_on_the_key() -> None:
    first = make_alert_id("unpermitted_field", "a1", "r1", "fp")
    assert first == make_alert_id("unpermitted_field", "a1", "r1", "fp")
    assert first != make_alert_id("unpermitted_field", "a1", "r2", "fp")
    assert len(first) == 32
