"""What counts as a missing field: normalisation, placeholders, structural address checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.core.checks import (
    BUILTIN_PLACEHOLDERS,
    checked_street_problem,
    normalize,
    street_problem,
    text_problem,
    zip_problem,
)

SPEC_PLACEHOLDERS = [
    "unknown",
    "unk",
    "n a",
    "na",
    "na na",
    "none",
    "null",
    "nil",
    "tbd",
    "xxx",
    "failed to provide",
    "not provided",
    "no address",
    "dont care",
    "see file",
    "0",
]


def test_spec_placeholders_are_built_in() -> None:
    assert set(SPEC_PLACEHOLDERS) <= BUILTIN_PLACEHOLDERS


@pytest.mark.parametrize(
    "value",
    [
        "Failed to Provide",
        "FAILED TO PROVIDE.",
        "Unknown Address",
        "NA NA",
        "N/A",
        "n.a.",
        "  None ",
        "Don't care",
        "see file",
        "TBD",
        "xxx",
        "address unknown",
        "Not provided by agency",
        "No Address",
        "0",
        "N. A.",
    ],
)
def test_placeholders(value: str) -> None:
    assert text_problem(value) == "placeholder"


@pytest.mark.parametrize("value", ["Atlanta", "Nakia", "Unk Street Bar", "Donna", "Nil Avenue Partners", "Known"])
def test_real_values_are_not_placeholders(value: str) -> None:
    assert text_problem(value) is None


def test_absent_and_empty() -> None:
    assert text_problem(None) == "absent"
    assert text_problem("") == "empty"
    assert text_problem(" .,; ") == "empty"


def test_policy_placeholders_extend_the_list() -> None:
    assert text_problem("On file", frozenset({"on file"})) == "placeholder"
    assert text_problem("On file") is None


@pytest.mark.parametrize(
    ("street", "problem"),
    [
        ("12 Oak Street", None),
        ("1600 Pennsylvania Ave NW", None),
        ("Apt 4, 221B Baker St", None),
        ("Oak Street", "street_without_number"),
        ("30301", "street_without_name"),
        ("Unknown", "placeholder"),
    ],
)
def test_street(street: str, problem: str | None) -> None:
    assert street_problem(street) == problem


_STREETISH = st.text(alphabet="0123456789 AaBbMmNnOoSsTtUuKkWwPpRrIiVvDdEe-.,#/\u00e9\u0663", max_size=30)


@given(
    st.one_of(_STREETISH, st.text(max_size=30), st.sampled_from(["12 Main St", "12 Unknown Rd", "1 A", " 7b  Oak "])),
    st.frozensets(st.sampled_from(["12 main st", "1 a", "7b oak", "unknown"])),
)
def test_the_street_fast_path_agrees_with_the_full_check(street: str, extra: frozenset[str]) -> None:
    assert street_problem(street, extra) == checked_street_problem(street, extra)


@pytest.mark.parametrize(
    ("zip_code", "problem"),
    [
        ("30301", None),
        ("30301-1234", None),
        ("303011234", None),
        ("12345", "placeholder"),
        ("00000", "placeholder"),
        ("99999-0000", "placeholder"),
        ("3030", "bad_zip"),
        ("ABCDE", "bad_zip"),
        ("NA", "placeholder"),
        ("", "empty"),
    ],
)
def test_zip(zip_code: str, problem: str | None) -> None:
    assert zip_problem(zip_code) == problem


@given(st.text(max_size=60))
def test_normalize_is_idempotent_and_clean(value: str) -> None:
    once = normalize(value)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once
