"""When is a required request field *missing*? (SPEC §4)

A field is missing when it is absent, null, empty or a placeholder. The real
leak this product exists for went out on addresses like "Failed to Provide",
"Unknown Address", "NA NA" or a lone zip of 12345, so this module is strict:
values are normalised (case-folded, punctuation removed, whitespace collapsed)
and compared against a built-in list extended by the policy; address fields
get structural checks too: a street line must be a complete address of a form
the agreement accepts (monitor/core/address.py), a zip 5 or 9 digits.

Results name the field and the failed check, never the value.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable
from typing import Any

from monitor.core.address import FORMS, classify
from monitor.core.cache import BoundedCache
from monitor.core.events import Request

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
_PUNCT_BYTES = string.punctuation.encode()
_CONTAINS_RE = re.compile(r"(?:^| )(?:" + "|".join(CONTAINS_PLACEHOLDERS) + r")(?: |$)")
_ZIP_RE = re.compile(r"^\d{5}(\d{4})?$")
_ZIP_FAST_RE = re.compile(r"\d{5}(?:-?\d{4})?\Z")
_STREET_FAST_RE = re.compile(r" *[0-9]+[A-Za-z]? +[A-Za-z][A-Za-z ]*\Z")  # "6829 Sunset Terrace"


def normalize(value: str) -> str:
    """Case-fold, remove punctuation, collapse whitespace: ``" N/A. "`` -> ``"na"``."""
    if value.isascii():  # bytes.translate is several times faster than str.translate with a table
        return " ".join(value.encode().translate(None, _PUNCT_BYTES).decode().lower().split())
    return " ".join(value.casefold().translate(_PUNCT).split())


def _normalized_problem(norm: str, extra: frozenset[str]) -> str | None:
    if not norm:
        return "empty"
    if norm in BUILTIN_PLACEHOLDERS or norm in extra:
        return "placeholder"
    # Every CONTAINS_PLACEHOLDERS needle contains one of these words: a cheap exact pre-filter for the regex.
    if ("unknown" in norm or "provide" in norm or "address" in norm) and _CONTAINS_RE.search(norm):
        return "placeholder"
    return None


def text_problem(value: object, extra_placeholders: frozenset[str] = frozenset()) -> str | None:
    """Why a text value does not count as given (``absent``, ``empty``, ``placeholder``), or None."""
    if value is None:
        return "absent"
    if not isinstance(value, str):
        return "wrong_type"
    folded = value.casefold()
    # A single alphanumeric token normalises to itself: skip the work for "Atlanta", "A123", "30301".
    return _normalized_problem(folded if folded.isalnum() else normalize(value), extra_placeholders)


ALL_FORMS = frozenset(FORMS)


def street_problem(value: object, extra: frozenset[str] = frozenset(), forms: frozenset[str] = ALL_FORMS) -> str | None:
    """Why a street line is no usable address (a check name), or None; ``forms``: the accepted
    :data:`monitor.core.address.FORMS`, a ``<form>_not_accepted`` check for the others."""
    # The common case, "6829 Sunset Terrace": ASCII letters, digits and spaces only, so the normal form is
    # just lower case with single spaces, and a house number and a name are there. It is still a placeholder
    # if it contains one of CONTAINS_PLACEHOLDERS or is one of the policy's own (the built-in ones contain no
    # digit but "0"). A property test checks this against the full path below.
    if isinstance(value, str) and _STREET_FAST_RE.match(value) and "street" in forms:
        norm = " ".join(value.lower().split())
        if not ("unknown" in norm or "provide" in norm or "address" in norm) and norm not in extra:
            return None
    return checked_street_problem(value, extra, forms)


def checked_street_problem(
    value: object, extra: frozenset[str] = frozenset(), forms: frozenset[str] = ALL_FORMS
) -> str | None:
    """:func:`street_problem` without its fast path."""
    if not isinstance(value, str):
        return text_problem(value, extra)
    norm = normalize(value)
    problem = _normalized_problem(norm, extra)
    if problem is not None:
        return problem
    verdict = classify(norm)
    if verdict in ALL_FORMS:
        return None if verdict in forms else f"{verdict}_not_accepted"
    return verdict


def zip_problem(value: object, extra: frozenset[str] = frozenset()) -> str | None:
    if isinstance(value, str) and _ZIP_FAST_RE.match(value):  # the common case: a well-formed zip
        return "placeholder" if value[:5] in ZIP_PLACEHOLDERS else None
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


def _value_problem(value: Any, extra: frozenset[str]) -> str | None:
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return None if value else "false"
    if isinstance(value, list):
        if not value:
            return "empty"
        return "placeholder" if all(text_problem(v, extra) for v in value) else None
    if isinstance(value, str):
        return text_problem(value, extra)
    return None  # dates and other typed values: present is enough


def _parent(head: str) -> Callable[[Request], Any]:
    """The object holding a field path's leaf (None where a step is absent)."""
    parents: dict[str, Callable[[Request], Any]] = {
        "subject.name": lambda r: r.subject.name,
        "subject.address": lambda r: r.subject.address,
        "subject": lambda r: r.subject,
        "requester": lambda r: r.requester,
        "legal_basis": lambda r: r.legal_basis,
        "": lambda r: r,
    }
    return parents[head]


_Check = Callable[[Any, frozenset[str]], str | None]


class RequiredFields:
    """The missing-field check for one agreement's list of required request fields.

    Values that repeat (cities, states, statutes, surnames) are checked once and
    cached; street and zip get their structural checks on every request.
    """

    __slots__ = ("_cache", "_checks", "_extra")

    def __init__(
        self,
        paths: Iterable[str],
        extra_placeholders: frozenset[str] = frozenset(),
        address_forms: frozenset[str] = ALL_FORMS,
    ) -> None:
        self._extra = extra_placeholders
        self._cache: BoundedCache[object, str | None] = BoundedCache()
        # Grouped by parent object so each parent (address, legal basis...) is looked up once per request.
        groups: dict[str, list[tuple[str, str, _Check | None]]] = {}
        specials: dict[str, _Check] = {
            # Every form accepted (the default): the plain function, without a partial's call on every request.
            "subject.address.street": (
                street_problem if address_forms == ALL_FORMS else functools.partial(street_problem, forms=address_forms)
            ),
            "subject.address.zip": zip_problem,
        }
        for path in paths:
            head, _, leaf = path.rpartition(".")
            special = specials.get(path)
            groups.setdefault(head, []).append((path, leaf, special))
        self._checks = tuple((_parent(head), tuple(leaves)) for head, leaves in groups.items())

    def missing(self, request: Request) -> tuple[tuple[str, str], ...]:
        """``(path, check)`` for every required path whose value is missing."""
        found: list[tuple[str, str]] | None = None
        extra, cache = self._extra, self._cache
        for parent_of, leaves in self._checks:
            parent = parent_of(request)
            for path, leaf, special in leaves:
                value = None if parent is None else getattr(parent, leaf)
                if special is not None:
                    problem = special(value, extra)
                elif value.__class__ is str:
                    problem = cache.get(value, _UNSEEN)
                    if problem is _UNSEEN:
                        problem = cache.put(value, text_problem(value, extra))
                else:
                    problem = _value_problem(value, extra)
                if problem is not None:
                    if found is None:
                        found = []
                    found.append((path, problem))
        return tuple(found) if found else ()


_UNSEEN = "\x00unseen"
