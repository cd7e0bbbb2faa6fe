"""The join state's local copy: what it loads is the changelog up to the offset it claims, or a reason why not."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.join import JoinEntry
from monitor.errors import UsageError
from monitor.live.local_state import Loaded, LocalState, usable

TOPIC = "group-join-state-changelog"
ENCODE = msgspec.msgpack.Encoder().encode


def entry(first_ms: int) -> bytes:
    return ENCODE(JoinEntry(first_ms=first_ms))


def replayed(records: list[tuple[bytes, bytes | None]]) -> dict[str, JoinEntry]:
    """The table a changelog holds: each key's last value, tombstones removing."""
    table: dict[str, JoinEntry] = {}
    for key, value in records:
        if value is None:
            table.pop(key.decode(), None)
        else:
            table[key.decode()] = msgspec.msgpack.decode(value, type=JoinEntry)
    return table


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalState]:
    with LocalState(tmp_path, TOPIC) as state:
        yield state


def test_a_partition_loads_its_snapshot_and_the_frames_after_it(tmp_path: Path) -> None:
    local = LocalState(tmp_path, TOPIC)
    local.start(2, {"r1": entry(1)}, 4, (b"r1", entry(1)))
    local.append(2, 5, [(b"r2", entry(2)), (b"r1", None)])
    local.append(2, 7, [(b"r3", entry(3))])
    local.close_all()
    with LocalState(tmp_path, TOPIC) as again:
        loaded = again.load(2)
    assert isinstance(loaded, Loaded)
    assert loaded.entries == {"r2": JoinEntry(first_ms=2), "r3": JoinEntry(first_ms=3)}
    assert (loaded.offset, loaded.frames, loaded.logged) == (7, 2, 3)
    assert usable(loaded, 8, (b"r3", entry(3), -1)) is None


def test_why_local_state_is_not_used(tmp_path: Path, local: LocalState) -> None:
    assert local.load(0) == "no local state"
    local.start(0, {"r1": entry(1)}, 9, (b"r1", entry(1)), 1_700_000_000_000)
    loaded = local.load(0)
    assert isinstance(loaded, Loaded)
    assert "ahead of the changelog" in str(usable(loaded, 5, None))  # the topic was recreated
    assert "no longer holds offset 9" in str(usable(loaded, 20, None))  # compacted away
    assert "not the one" in str(usable(loaded, 20, (b"r1", entry(2), 1_700_000_000_000)))  # another record there
    assert "not the one" in str(usable(loaded, 20, (b"r9", entry(1), 1_700_000_000_000)))
    # The same record written again later (the same input replayed onto a recreated topic): not the same.
    assert "not the one" in str(usable(loaded, 20, (b"r1", entry(1), 1_700_000_000_001)))
    assert usable(loaded, 10, (b"r1", entry(1), 1_700_000_000_000)) is None  # the changelog's tail is empty
    assert usable(loaded, 50, (b"r1", entry(1), 1_700_000_000_000)) is None  # behind: the tail is read
    assert usable(loaded, 50, (b"r1", entry(1), -1)) is None  # a timestamp the broker did not give

    snapshot = tmp_path / TOPIC / "0" / "snapshot"
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    assert "corrupt" in str(local.load(0))
    snapshot.write_bytes(b"")
    assert "corrupt" in str(local.load(0))

    local.start(1, {}, -1, None)
    local.close_all()
    with LocalState(tmp_path, "another-changelog") as other:
        (tmp_path / "another-changelog" / "1").symlink_to(tmp_path / TOPIC / "1")
        assert "is of group-join-state-changelog[1]" in str(other.load(1))


def test_a_torn_frame_ends_the_log_and_resume_cuts_it_off(tmp_path: Path) -> None:
    local = LocalState(tmp_path, TOPIC)
    local.start(0, {}, -1, None)
    local.append(0, 0, [(b"a", entry(1))])
    local.append(0, 1, [(b"b", entry(2))])
    local.close_all()
    log = tmp_path / TOPIC / "0" / "log"
    log.write_bytes(log.read_bytes()[:-3])  # a crash half-way through the second frame
    with LocalState(tmp_path, TOPIC) as local:
        loaded = local.load(0)
        assert isinstance(loaded, Loaded) and loaded.offset == 0 and set(loaded.entries) == {"a"}
        local.resume(0, loaded)
        local.append(0, 1, [(b"c", entry(3))])  # what the changelog's tail said, appended after the cut
        loaded = local.load(0)
        assert isinstance(loaded, Loaded) and loaded.offset == 1 and set(loaded.entries) == {"a", "c"}


def test_a_gap_stops_the_log_until_the_next_snapshot(local: LocalState) -> None:
    local.start(0, {}, -1, None)
    local.append(0, 0, [(b"a", entry(1))])
    local.append(0, 5, [(b"b", entry(2))])  # offsets 1-4 written by somebody else
    assert local.wants_snapshot(0, 2)
    loaded = local.load(0)
    assert isinstance(loaded, Loaded) and loaded.offset == 0  # the rest comes from the changelog
    local.write_snapshot(0, LocalState.encode({"a": JoinEntry(first_ms=1), "b": JoinEntry(first_ms=2)}))
    loaded = local.load(0)
    assert isinstance(loaded, Loaded) and loaded.offset == 5 and set(loaded.entries) == {"a", "b"}
    assert usable(loaded, 6, (b"b", entry(2), -1)) is None


def test_one_process_per_directory(tmp_path: Path) -> None:
    first = LocalState(tmp_path, TOPIC)
    with pytest.raises(UsageError, match="in use by another worker"):
        LocalState(tmp_path, TOPIC)
    first.close_all()
    LocalState(tmp_path, TOPIC).close_all()


writes = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"c", b"d"]), st.one_of(st.none(), st.integers(0, 99))), max_size=30
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(writes, st.booleans()), max_size=8),  # checkpoints: their writes, and whether a snapshot
    st.integers(0, 40),  # bytes torn off the log's end by a crash
)
def test_what_loads_is_the_changelog_up_to_the_offset_it_claims(
    checkpoints: list[tuple[list[tuple[bytes, int | None]], bool]], torn: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        local = LocalState(Path(directory), TOPIC)
        local.start(3, {}, -1, None)
        changelog: list[tuple[bytes, bytes | None]] = []
        stamps: list[int] = []  # each record's timestamp: its checkpoint's
        for number, (changes, snapshot) in enumerate(checkpoints):
            records = [(key, None if value is None else entry(value)) for key, value in changes]
            local.append(3, len(changelog), records, 1_000 + number)
            changelog += records
            stamps += [1_000 + number] * len(records)
            if snapshot and records:
                local.write_snapshot(3, LocalState.encode(replayed(changelog)))
        local.close_all()
        log = Path(directory) / TOPIC / "3" / "log"
        log.write_bytes(log.read_bytes()[: max(0, log.stat().st_size - torn)])
        with LocalState(Path(directory), TOPIC) as again:
            loaded = again.load(3)
        assert isinstance(loaded, Loaded)
        assert loaded.entries == replayed(changelog[: loaded.offset + 1])
        if loaded.offset >= 0:
            key, value = changelog[loaded.offset]
            assert usable(loaded, len(changelog), (key, value, stamps[loaded.offset])) is None
        if not torn:
            assert loaded.offset == len(changelog) - 1


def test_preloaded_partitions_load_as_they_would_have(tmp_path: Path) -> None:
    with LocalState(tmp_path, TOPIC) as local:
        for partition in range(3):
            local.start(partition, {f"r{partition}": entry(partition)}, 0, (f"r{partition}".encode(), entry(partition)))
    with LocalState(tmp_path, TOPIC) as local:
        local.preload()
        first = local.load(0)
        assert isinstance(first, Loaded) and first.entries == {"r0": JoinEntry(first_ms=0)}
        local.forget_preloaded()  # partitions 1 and 2 went to another worker...
        again = local.load(2)  # ...and come back later: read from disk then
        assert isinstance(again, Loaded) and again.entries == {"r2": JoinEntry(first_ms=2)}
        assert local.load(5) == "no local state"
