"""The accounting of disclosures kept as a tamper-evident ledger in a directory (``replay --ledger DIR``).

``entries.jsonl`` holds one :func:`~monitor.core.ledger.record_bytes` line per disclosure, in the order they
were judged; each line is a leaf of a Merkle tree (RFC 9162 §2.1, :mod:`monitor.core.merkle`).
``checkpoints.jsonl`` holds signed tree heads: the tree size, its root, the time and an Ed25519 signature
over those. Whoever keeps a copy of a checkpoint can later prove that the ledger still holds, unchanged,
every entry it covered (:func:`verify` with ``against``), and anyone with the public key can check a
person's entries against the latest checkpoint (:func:`lookup`). docs/ledger.md says what to hand whom.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from monitor.core import merkle
from monitor.core.ledger import AccountingEntry, LedgerRecord, read_record, record_bytes
from monitor.core.timeutil import format_ms
from monitor.errors import UsageError

ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"


class Checkpoint(msgspec.Struct, frozen=True):
    """A signed tree head."""

    size: int
    root: str  # hex
    time: str
    key_id: str  # the first 16 hex digits of SHA-256 of the raw public key
    signature: str = ""  # base64 Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        return _CANONICAL.encode({"size": self.size, "root": self.root, "time": self.time, "key_id": self.key_id})


_CANONICAL = msgspec.json.Encoder(order="sorted")
_CHECKPOINT = msgspec.json.Decoder(Checkpoint)


# -- keys ------------------------------------------------------------------------------------------


def generate_keys(private_path: str, public_path: str) -> str:
    """A new signing key (PEM, readable by its owner only) and its public key (PEM); returns the key id."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    public = key.public_key()
    Path(public_path).write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(public)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_signing_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    """The signing key of PEM ``pem`` (``where``: the file or variable it came from, for errors)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read the ledger signing key from {where}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"the ledger signing key from {where} is not an Ed25519 key (dismon ledger keygen makes one)")
    return key


def load_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read the ledger public key from {where}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"the ledger public key from {where} is not an Ed25519 key")
    return key


def read_checkpoint(line: bytes) -> Checkpoint:
    return _CHECKPOINT.decode(line)


def signature_ok(checkpoint: Checkpoint, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return checkpoint.key_id == key_id(public)


# -- the tree as it grows ----------------------------------------------------------------------------


class Frontier:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves, largest first: enough to
    append a leaf and to compute the root in O(log n), as RFC 9162's split gives it."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (leaves, hash)

    def append(self, leaf: bytes) -> None:
        self.size += 1
        peaks = self._peaks
        peaks.append((1, leaf))
        while len(peaks) > 1 and peaks[-1][0] == peaks[-2][0]:
            (count, right), (_count, left) = peaks.pop(), peaks.pop()
            peaks.append((2 * count, merkle.node_hash(left, right)))

    def root(self) -> bytes:
        if not self._peaks:
            return merkle.root([])
        digest = self._peaks[-1][1]
        for _count, peak in reversed(self._peaks[:-1]):
            digest = merkle.node_hash(peak, digest)
        return digest


# -- writing ------------------------------------------------------------------------------------------


class LedgerLog:
    """A ledger's tree and ids as its one writer holds them: entries become records at the next position,
    an entry whose id it holds already adds nothing, and the tree as it is can be signed."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id(key.public_key())
        self.frontier = Frontier()
        self.ids: set[str] = set()

    @property
    def size(self) -> int:
        return self.frontier.size

    def load(self, line: bytes, where: str) -> None:
        """A record the ledger holds already (read back at start)."""
        try:
            record = read_record(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UsageError(f"{where}: not a ledger record ({exc}); run dismon ledger verify") from exc
        self.ids.add(record.id)
        self.frontier.append(merkle.leaf_hash(line))

    def add(self, entry: AccountingEntry) -> tuple[str, bytes] | None:
        """The entry's id and the record to write for it (the tree grows by it), or None if the ledger has it
        already (the same disclosure judged again: a replay run twice, a response delivered twice, a worker's
        restart)."""
        entry_id = entry.entry_id
        if entry_id in self.ids:
            return None
        self.ids.add(entry_id)
        line = record_bytes(self.frontier.size, entry_id, entry)
        self.frontier.append(merkle.leaf_hash(line))
        return entry_id, line

    def sign(self, now_ms: int) -> Checkpoint:
        """A checkpoint of the tree as it is now."""
        unsigned = Checkpoint(self.frontier.size, self.frontier.root().hex(), format_ms(now_ms), self.key_id)
        signature = base64.b64encode(self.key.sign(unsigned.signed_bytes())).decode()
        return msgspec.structs.replace(unsigned, signature=signature)


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    return _CANONICAL.encode(checkpoint)


@dataclass
class LedgerWriter:
    """Appends entries and signed checkpoints to a ledger directory; a run of the same pipeline appends to
    what the last one left."""

    directory: Path
    key: Ed25519PrivateKey
    now_ms: Callable[[], int]
    every: int = 100_000  # entries between checkpoints (and one at close)
    appended: int = 0

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = LedgerLog(self.key)
        entries = self.directory / ENTRIES
        if entries.exists():
            for number, line in enumerate(entries.read_bytes().splitlines()):
                self.log.load(line, f"{entries}:{number + 1}")
        self._entries = entries.open("ab")
        self._checkpoints = (self.directory / CHECKPOINTS).open("ab")
        self._since = 0

    def append(self, entry: AccountingEntry) -> None:
        added = self.log.add(entry)
        if added is None:
            return
        self._entries.write(added[1] + b"\n")
        self.appended += 1
        self._since += 1
        if self._since >= self.every:
            self.checkpoint()

    def checkpoint(self) -> Checkpoint:
        """Sign the tree as it is now (after the entries reach the disk) and append the checkpoint."""
        self._entries.flush()
        os.fsync(self._entries.fileno())
        checkpoint = self.log.sign(self.now_ms())
        self._checkpoints.write(checkpoint_bytes(checkpoint) + b"\n")
        self._checkpoints.flush()
        self._since = 0
        return checkpoint

    def close(self) -> Checkpoint:
        """The last checkpoint, then the files closed."""
        try:
            return self.checkpoint()
        finally:
            self._entries.close()
            self._checkpoints.close()


# -- reading and verifying ----------------------------------------------------------------------------


class Broken(Exception):
    """The ledger does not verify: the message names the first entry or checkpoint that does not."""


@dataclass
class Ledger:
    """A ledger directory read whole and verified: its records, leaves and checkpoints."""

    records: list[LedgerRecord]
    leaves: list[bytes]
    checkpoints: list[Checkpoint]
    root: bytes  # of the whole tree

    @property
    def latest(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None


def verify(directory: str, public: Ed25519PublicKey, against: Checkpoint | None = None) -> Ledger:
    """:func:`verify_lines` of a ledger directory."""
    path = Path(directory)
    if not (path / ENTRIES).exists():
        raise UsageError(f"{directory} holds no ledger ({ENTRIES} is missing)")
    checkpoints = (path / CHECKPOINTS).read_bytes().splitlines() if (path / CHECKPOINTS).exists() else []
    return verify_lines((path / ENTRIES).read_bytes().splitlines(), checkpoints, public, against)


def verify_lines(
    entries: list[bytes], checkpoint_lines: list[bytes], public: Ed25519PublicKey, against: Checkpoint | None = None
) -> Ledger:
    """Recompute the tree of ``entries`` and check every entry, every checkpoint's signature and root, and
    with ``against`` (a checkpoint kept from earlier) that the ledger is consistent with it; raises
    :class:`Broken` naming the first thing that fails."""
    checkpoints = []
    for number, line in enumerate(checkpoint_lines):
        try:
            checkpoints.append(read_checkpoint(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise Broken(f"checkpoint {number + 1} is not a checkpoint") from None
    records, leaves = [], []
    frontier = Frontier()
    due = iter(enumerate(checkpoints))
    pending = next(due, None)
    covered = 0  # entries covered by the checkpoints verified so far
    while pending is not None and pending[1].size == 0:
        covered = _check(pending[0], pending[1], public, frontier.root(), covered)
        pending = next(due, None)
    seen: dict[str, int] = {}
    for seq, line in enumerate(entries):
        record = _record(seq, line)
        first = seen.setdefault(record.id, seq)
        if first != seq:
            raise Broken(f"entry {seq} (id {record.id}) repeats entry {first}: an entry is accounted once")
        records.append(record)
        leaf = merkle.leaf_hash(line)
        leaves.append(leaf)
        frontier.append(leaf)
        while pending is not None and pending[1].size == frontier.size:
            covered = _check(pending[0], pending[1], public, frontier.root(), covered)
            pending = next(due, None)
    if pending is not None:
        number, checkpoint = pending
        if checkpoint.size < frontier.size or (number > 0 and checkpoint.size < checkpoints[number - 1].size):
            raise Broken(f"checkpoint {number + 1} (size {checkpoint.size}) is out of order")
        raise Broken(
            f"checkpoint {number + 1} covers {checkpoint.size:,} entries but the ledger holds {frontier.size:,}: "
            f"entries {frontier.size}..{checkpoint.size - 1} were deleted"
        )
    ledger = Ledger(records, leaves, checkpoints, frontier.root())
    if against is not None:
        _consistent(ledger, against, public)
    return ledger


def _record(seq: int, line: bytes) -> LedgerRecord:
    try:
        record = read_record(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Broken(f"entry {seq} is not a ledger record") from None
    if record.seq != seq:
        raise Broken(f"entry {seq} says it is entry {record.seq}: an entry was deleted, inserted or moved there")
    if record.id != record.entry.entry_id:
        raise Broken(f"entry {seq} (id {record.id}) does not match its content: it was edited")
    if record_bytes(seq, record.id, record.entry) != line:
        raise Broken(f"entry {seq} (id {record.id}) is not written as the ledger writes it: it was edited")
    return record


def _check(number: int, checkpoint: Checkpoint, public: Ed25519PublicKey, root: bytes, covered: int) -> int:
    if not signature_ok(checkpoint, public):
        raise Broken(f"checkpoint {number + 1} (size {checkpoint.size}): the signature does not verify")
    if checkpoint.root != root.hex():
        raise Broken(
            f"checkpoint {number + 1} (size {checkpoint.size}) does not match the entries: one of entries "
            f"{covered}..{checkpoint.size - 1} was changed, deleted or moved"
        )
    return checkpoint.size


def _consistent(ledger: Ledger, against: Checkpoint, public: Ed25519PublicKey) -> None:
    """The ledger extends the kept checkpoint: a consistency proof from its size to the ledger's, checked
    with the RFC's verifier against the kept root."""
    if not signature_ok(against, public):
        raise Broken("the kept checkpoint's signature does not verify with this key")
    size = len(ledger.leaves)
    if against.size > size:
        raise Broken(
            f"the kept checkpoint covers {against.size:,} entries, the ledger holds {size:,}: entries were deleted"
        )
    proof = merkle.consistency_proof(against.size, ledger.leaves) if against.size else []
    if against.size and not merkle.verify_consistency(
        against.size, size, bytes.fromhex(against.root), ledger.root, proof
    ):
        raise Broken(
            f"the ledger is not consistent with the kept checkpoint (size {against.size}): one of its first "
            f"{against.size:,} entries was changed"
        )


def inclusion(ledger: Ledger, seq: int) -> bool | None:
    """Whether entry ``seq`` is proven included in the latest checkpoint (None: no checkpoint covers it)."""
    latest = ledger.latest
    if latest is None or seq >= latest.size:
        return None
    covered = ledger.leaves[: latest.size]
    proof = merkle.inclusion_proof(seq, covered)
    return merkle.verify_inclusion(ledger.leaves[seq], seq, latest.size, proof, bytes.fromhex(latest.root))


def between(ledger: Ledger, from_ms: int | None, to_ms: int | None) -> Iterator[LedgerRecord]:
    """The records whose disclosure happened in ``[from_ms, to_ms)``."""
    for record in ledger.records:
        at = record.entry.event_time_ms
        if (from_ms is None or at >= from_ms) and (to_ms is None or at < to_ms):
            yield record


def totals(records: list[LedgerRecord]) -> dict[str, dict[str, int]]:
    """The yearly accounting's counts: by agreement, recipient, purpose (statute) and verdict."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in ("agreement", "recipient", "purpose", "verdict")}
    for record in records:
        entry = record.entry
        counts["agreement"][entry.agreement_id] += 1
        recipient = " / ".join(p for p in (entry.recipient_agency, entry.recipient_unit) if p) or "(unknown: orphan)"
        counts["recipient"][recipient] += 1
        counts["purpose"][entry.statute or "(none given)"] += 1
        counts["verdict"][entry.verdict] += 1
    return {name: dict(sorted(counter.items())) for name, counter in counts.items()}
