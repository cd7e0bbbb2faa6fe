"""Synthetic subjects: names, addresses and the junk addresses of the real leak, derived from an index.

Everything is a pure function of ``(seed, index)``, so a scenario of 1.28
million requests needs no per-request memory to be rendered again. The
pools are invented; no real person is described.
"""

from __future__ import annotations

from typing import Any

_MASK = (1 << 64) - 1

FIRST = (
    "Alex", "Maria", "José", "Wei", "Fatima", "John", "Ana", "Luis", "Mei", "Omar", "Sofia", "Daniel",
    "Carmen", "Nguyen", "Priya", "Samuel", "Elena", "Kofi", "Rosa", "Ahmed", "Lucia", "Ivan", "Grace", "Tomás",
)  # fmt: skip
LAST = (
    "Garcia", "Smith", "Hernandez", "Nguyen", "Lopez", "Kim", "Martinez", "Okafor", "Patel", "Rodriguez",
    "Chen", "Silva", "Johnson", "Gonzalez", "Ali", "Perez", "Brown", "Rivera", "Santos", "Morales",
    "Ramirez", "Torres", "Flores", "Diaz", "Cruz", "Reyes", "Ortiz", "Gutierrez", "Chavez", "Ramos",
)  # fmt: skip
STREETS = (
    "Oak Street", "Maple Avenue", "Cedar Lane", "Pine Road", "Elm Court", "Washington Blvd", "Lake Drive",
    "Hillcrest Way", "Sunset Terrace", "Park Place", "River Road", "Mission Street", "Broadway", "Main St",
)  # fmt: skip
CITIES = (
    ("Atlanta", "GA", "303"), ("Chicago", "IL", "606"), ("Houston", "TX", "770"), ("Phoenix", "AZ", "850"),
    ("Newark", "NJ", "071"), ("Miami", "FL", "331"), ("Denver", "CO", "802"), ("Fresno", "CA", "937"),
    ("Charlotte", "NC", "282"), ("Omaha", "NE", "681"), ("Yakima", "WA", "989"), ("Raleigh", "NC", "276"),
)  # fmt: skip

#: Addresses that are no address at all, as seen in the real case (placeholders, zip-only, no house number).
JUNK_ADDRESSES: tuple[dict[str, Any], ...] = (
    {"street": "Failed to Provide", "city": "Failed to Provide", "state": "NA", "zip": "12345"},
    {"street": "Unknown Address", "city": "Unknown", "state": "TX"},
    {"street": "NA NA", "city": "NA", "state": "NA", "zip": "00000"},
    {"zip": "303{:02d}"},  # a lone zip code: it passed a zip-only check
    {"street": "", "city": "", "state": "", "zip": "99999"},
    {"street": "Main Street", "city": "Houston", "state": "TX", "zip": "770{:02d}"},  # no house number
    {"street": "N/A", "city": "Chicago", "state": "IL", "zip": "606{:02d}"},
    {"street": "see file", "city": "Denver", "state": "CO", "zip": "802"},  # and a 3-digit zip
)


def mix(seed: int, index: int, salt: int = 0) -> int:
    """A 64-bit hash of (seed, index, salt): splitmix64's finaliser."""
    x = (index * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def name(seed: int, index: int) -> dict[str, str]:
    h = mix(seed, index, 1)
    return {"first": FIRST[h % len(FIRST)], "last": LAST[(h >> 16) % len(LAST)]}


def other_name(seed: int, index: int) -> dict[str, str]:
    """A name guaranteed to differ from ``name(seed, index)`` in the last name."""
    own = name(seed, index)
    h = mix(seed, index, 2)
    last = LAST[(h >> 16) % len(LAST)]
    if last == own["last"]:
        last = LAST[(LAST.index(last) + 1) % len(LAST)]
    return {"first": FIRST[h % len(FIRST)], "last": last}


def address(seed: int, index: int) -> dict[str, str]:
    h = mix(seed, index, 3)
    city, state, zip3 = CITIES[h % len(CITIES)]
    return {
        "street": f"{1 + (h >> 8) % 9800} {STREETS[(h >> 24) % len(STREETS)]}",
        "city": city,
        "state": state,
        "zip": f"{zip3}{(h >> 32) % 100:02d}",
    }


def junk_address(seed: int, index: int) -> dict[str, str]:
    h = mix(seed, index, 4)
    template = JUNK_ADDRESSES[h % len(JUNK_ADDRESSES)]
    return {k: v.format((h >> 8) % 100) for k, v in template.items()}


def dob(seed: int, index: int) -> str:
    h = mix(seed, index, 5)
    return f"{1950 + h % 55}-{1 + (h >> 8) % 12:02d}-{1 + (h >> 16) % 28:02d}"
