"""Which form a street line takes (USPS Publication 28), and whether it names a place mail can reach.

The real leak went out on "Failed to Provide" and lone zip codes; the opposite failure, a critical alert
for a real address, teaches people to ignore the monitor. So a street line is judged as a careful clerk
would, on its normal form (:func:`monitor.core.checks.normalize`: case-folded, punctuation removed, whitespace
collapsed), and only ever on that form: "P.O. Box 12" and "po box 12" cannot get different verdicts.

Forms (``FORMS``), each one an agreement may accept or not (policy key ``address_forms``):

- ``street``: a house number and a street name. The number may be digits ("221B", "123 1/2", "45-67",
  the grid "N6W23001") or words ("One World Trade Center", "Twenty-Two Oak St"). Puerto Rico's
  urbanization and ``Calle`` lines ("Urb Las Gladiolas 150 Calle A", "Calle Aurora 1234") are streets too.
  A number that only follows a unit designator ("Main Street Apt 4") is not a house number.
- ``po_box``: "PO Box 123", "P.O. Box 123", "Post Office Box 123", "Box 123".
- ``rural_route``: rural route and highway contract boxes, "RR 2 Box 152", "HC 68 Box 23".
- ``military``: "PSC 1234 Box 12345", "Unit 2050 Box 4190", "CMR 450 Box 123" (city APO/FPO/DPO).
- ``general_delivery``: "General Delivery", for people without a fixed address.

A line of none of these forms fails with ``street_without_number``, ``street_without_name`` (no letter at
all: a zip typed into the street field) or ``box_without_number`` (a box form without its box number).
"""

from __future__ import annotations

import re

FORMS = ("street", "po_box", "rural_route", "military", "general_delivery")

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
# "Twenty-Two" normalises to "twentytwo": punctuation is removed, not replaced by a space.
_NUMBER_WORD = rf"(?:(?:{_TENS}) ?(?:{_UNITS})?|{_TEENS}|{_UNITS}|hundred|thousand)"
_WORDS_NUMBER_RE = re.compile(rf"{_NUMBER_WORD}(?: (?:{_NUMBER_WORD}|and))* (?=.*[^\W\d_])")
_BOX_NUMBER = r" ?(?:no )?[a-z]?\d+[a-z]?"
# (form, the line up to its box number, the line without a box number)
_BOXES = tuple(
    (form, re.compile(f"(?:{head}){_BOX_NUMBER}"), re.compile(bare))
    for form, head, bare in (
        ("po_box", r"(?:(?:p ?o|post office) ?)?box|pob", r"(?:p ?o|post office) ?box|pob"),
        (
            "rural_route",
            r"(?:rr|rural route|rfd|hc|highway contract|star route) ?\d+ ?(?:box|bx)",
            r"(?:rr|rfd|hc) ?\d+",
        ),
        ("military", r"(?:psc|cmr|unit) ?\d+ ?box", r"(?:psc|cmr) ?\d+"),
    )
)
_NUMBER_WORDS_RE = re.compile(rf"{_NUMBER_WORD}(?: (?:{_NUMBER_WORD}|and))*")
_GENERAL_DELIVERY = frozenset({"general delivery", "general del", "gen delivery", "gen del"})
#: Secondary unit designators (Publication 28, appendix C2): a number after one is not a house number.
_DESIGNATORS = frozenset(
    {"apt", "apartment", "unit", "ste", "suite", "rm", "room", "fl", "floor", "bldg", "building", "spc", "space",
     "trlr", "trailer", "dept", "lot", "pier", "slip", "hngr", "hangar", "stop", "key", "frnt", "rear"}
)  # fmt: skip
_HAS_DIGIT_RE = re.compile(r"\d")
_HAS_LETTER_RE = re.compile(r"[^\W\d_]")


def classify(norm: str) -> str:
    """The form of a normalised street line (one of ``FORMS``), or the check it fails."""
    if norm in _GENERAL_DELIVERY:
        return "general_delivery"
    for form, whole, bare in _BOXES:
        if whole.fullmatch(norm):
            return form
        if bare.fullmatch(norm):
            return "box_without_number"
    return _street(norm)


def _street(norm: str) -> str:
    if _WORDS_NUMBER_RE.match(norm):
        return "street"  # the pattern demands a letter after the number words
    tokens = norm.split()
    after_designator = False
    for index, token in enumerate(tokens):
        if _HAS_DIGIT_RE.search(token) and not after_designator:
            others = tokens[:index] + tokens[index + 1 :]
            return "street" if any(_HAS_LETTER_RE.search(t) for t in others) else "street_without_name"
        after_designator = token in _DESIGNATORS
    if _NUMBER_WORDS_RE.fullmatch(norm) or not _HAS_LETTER_RE.search(norm):
        return "street_without_name"
    return "street_without_number"
