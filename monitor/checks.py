"""When is a required request field *missing*? (SPEC §4)

A field is missing when it is absent, null, empty or a placeholder. The real
leak this product exists for went out on addresses like "Failed to Provide",
"Unknown Address", "NA NA" or a lone zip of 12345, so this module is strict:
values are normalised (case-folded, punctuation removed, whitespace collapsed)
and compared against a built-in list extended by the policy; address fields
get structural checks too (a street needs a house number, a zip 5 or 9 digits).

Results name the field and the failed check, never the value.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

from monitor.events import Request

BUILTIN_PLACEHOLDERS = frozenset(
    {
        "unknown", "unk", "n a", "na", "na na", "none", "null", "nil", "tbd", "xxx",
        "failed to provide", "not provided", "no address", "dont care", "see file", "0",
        "nan", "undefined", "test", "address", "street", "various", "same", "tba",
    }
)  # fmt: skip
#: A value containing any of these (as whole words) is a placeholder too.
CONTAINS_PLACEHOLDERS = ("unknown", "failed to provide", "not provided", "no address")
ZIP_PLACEHOLDERS = frozenset({"00000", "12345", "99999", "11111", "55555"})

_PUNCT = str.maketrans("", "", string.punctuation + "\u2019\u2018\u201c\u201d")
_SPACE_RE = re.compile(r"\s+")
_ZIP_RE = re.compile(r"^\d{5}(\d{4})?$")
_HAS_DIGIT_RE = re.compile(r"\d")
_HAS_LETTER_RE = re.compile(r"[^\W\d_]")


def normalize(value: str) -> str:
    """Case-fold, remove punctuation, collapse whitespace: ``" N/A. "`` -> ``"na"``."""
    return _SPACE_RE.sub(" ", value.casefold().translate(_PUNCT)).strip()


def text_problem(value: object, extra_placeholders: frozenset[str] = frozenset()) -> str | None:
    """Why a text value does not count as given (``absent``, ``empty``, ``placeholder``), or None."""
    if value is None:
        return "absent"
    if not isinstance(value, str):
        return "wrong_type"
    norm = normalize(value)
    if not norm:
        return "empty"
    if norm in BUILTIN_PLACEHOLDERS or norm in extra_placeholders:
        return "placeholder"
    padded = f" {norm} "
    if any(f" {needle} " in padded for needle in CONTAINS_PLACEHOLDERS):
        return "placeholder"
    return None


def street_problem(value: object, extra: frozenset[str] = frozenset()) -> str | None:
    problem = text_problem(value, extra)
    if problem is not None:
        return problem
    assert isinstance(value, str)
    if not _HAS_LETTER_RE.search(value):
        return "street_without_name"  # e.g. a zip code typed into the street field
    if not _HAS_DIGIT_RE.search(value):
        return "street_without_number"
    return None


def zip_problem(value: object, extra: frozenset[str] = frozenset()) -> str | None:
    problem = text_problem(value, extra)
    if problem is not None:
        return problem
    assert isinstance(value, str)
    digits = value.replace("-", "").replace(" ", "")
    if not _ZIP_RE.match(digits):
        return "bad_zip"
    if digits[:5] in ZIP_PLACEHOLDERS:
        return "placeholder"
    return None


def _get(request: Request, path: str) -> Any:
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _value_problem(path: str, value: Any, extra: frozenset[str]) -> str | None:
    if path == "subject.address.street":
        return street_problem(value, extra)
    if path == "subject.address.zip":
        return zip_problem(value, extra)
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return None if value else "false"
    if isinstance(value, list):
        if not value:
            return "empty"
        if all(text_problem(v, extra) for v in value):
            return "placeholder"
        return None
    if isinstance(value, str):
        return text_problem(value, extra)
    return None  # dates and other typed values: present is enough


def missing_fields(
    request: Request, paths: Iterable[str], extra_placeholders: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """``(path, check)`` for every required path whose value is missing, in the given order."""
    found = []
    for path in paths:
        problem = _value_problem(path, _get(request, path), extra_placeholders)
        if problem is not None:
            found.append((path, problem))
    return tuple(found)
