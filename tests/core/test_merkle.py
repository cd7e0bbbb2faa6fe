"""The Merkle tree of RFC 9162 §2.1: roots and audit paths checked against a brute-force bottom-up build (an
independent construction that gives the same tree), every proof verified by the RFC's algorithms, and any
changed, removed or reordered entry, or a tampered, padded or backwards proof, refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.core.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The tree bottom-up: pair neighbours, and carry an unpaired last node up unchanged."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        level = levels[-1]
        up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        levels.append(up + ([level[-1]] if len(level) % 2 else []))
    return levels


def _brute_path(index: int, leaves: list[bytes]) -> list[bytes]:
    path = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(40)]


def test_an_empty_and_a_one_leaf_tree() -> None:
    assert root([]) == hashlib.sha256(b"").digest()
    assert root([LEAVES[0]]) == LEAVES[0] == hashlib.sha256(b"\x00entry 0").digest()
    assert inclusion_proof(0, [LEAVES[0]]) == []


@pytest.mark.parametrize("n", range(1, 41))
def test_roots_and_paths_equal_the_bottom_up_build(n: int) -> None:
    leaves = LEAVES[:n]
    assert root(leaves) == _levels(leaves)[-1][0]
    for index in range(n):
        path = inclusion_proof(index, leaves)
        assert path == _brute_path(index, leaves)
        assert verify_inclusion(leaves[index], index, n, path, root(leaves))


@pytest.mark.parametrize("n", range(1, 25))
def test_every_consistency_proof_verifies_and_none_backwards(n: int) -> None:
    for m in range(1, n + 1):
        proof = consistency_proof(m, LEAVES[:n])
        assert verify_consistency(m, n, root(LEAVES[:m]), root(LEAVES[:n]), proof), (m, n)
        if m < n:
            assert not verify_consistency(n, m, root(LEAVES[:n]), root(LEAVES[:m]), proof)
            assert not verify_consistency(m, n, root(LEAVES[:m]), root(LEAVES[:n]), [*proof, LEAVES[0]])
            assert not verify_consistency(m, n, root(LEAVES[1 : m + 1]), root(LEAVES[:n]), proof)


entries = st.lists(st.binary(max_size=8), min_size=2, max_size=60, unique=True)


@given(entries, st.data())
def test_a_changed_removed_or_reordered_entry_fails(items: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in items]
    n, head = len(leaves), root(leaves)
    index = data.draw(st.integers(0, n - 1))
    path = inclusion_proof(index, leaves)
    assert verify_inclusion(leaves[index], index, n, path, head)
    assert not verify_inclusion(leaf_hash(items[index] + b"x"), index, n, path, head)  # changed
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
    swapped = list(leaves)
    swapped[index], swapped[other] = swapped[other], swapped[index]
    assert root(swapped) != head  # reordered
    assert not verify_inclusion(leaves[index], other, n, inclusion_proof(other, leaves), head)
    removed = leaves[:index] + leaves[index + 1 :]
    assert root(removed) != head
    if index < n - 1:  # the entry after it now sits where it was: its old path no longer holds
        assert not verify_inclusion(removed[index], index, n - 1, path, root(removed))


@given(entries, st.data())
def test_a_tampered_consistency_proof_fails(items: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in items]
    n = len(leaves)
    m = data.draw(st.integers(1, n - 1))
    proof = consistency_proof(m, leaves)
    first, second = root(leaves[:m]), root(leaves)
    assert verify_consistency(m, n, first, second, proof)
    at = data.draw(st.integers(0, len(proof) - 1))
    tampered = [*proof[:at], hashlib.sha256(proof[at]).digest(), *proof[at + 1 :]]
    assert not verify_consistency(m, n, first, second, tampered)
    assert not verify_consistency(m, n, first, second, proof[:-1])  # not used up exactly: short
    assert not verify_consistency(m, n, first, second, [*proof, proof[-1]])  # ... or padded
    edited = list(leaves)
    edited[data.draw(st.integers(0, m - 1))] = leaf_hash(b"edited")
    assert not verify_consistency(m, n, first, root(edited), proof)  # history rewritten under the old head
