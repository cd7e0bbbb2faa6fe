"""``dismon policy check --explain-address``: how an agreement judges one pasted address.

The address goes through the same :class:`monitor.core.checks.RequiredFields` the detector runs, inside a request
built for the purpose, so the answer is the detector's. The lines returned name fields, forms and checks,
never the address's text: they may end up in a terminal log or a ticket.
"""

from __future__ import annotations

import datetime as dt
import re

from monitor.core.address import FORMS, classify
from monitor.core.checks import RequiredFields, normalize
from monitor.core.events import Address, Name, Request, Requester, Subject
from monitor.core.policy import Agreement

_TAIL_RE = re.compile(r"(?:^|\s)(?P<state>[A-Za-z]{2})?[\s,]*(?P<zip>\d{5}(?:[-\s]?\d{4})?)?\s*$")
_FIELDS = ("street", "city", "state", "zip")
_ANY_TIME = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def split_address(text: str) -> Address:
    """A one-line address, "street[, more street], city, ST 12345", as its fields; parts left out are None."""
    parts = [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    state = zip_code = None
    if parts:
        tail = _TAIL_RE.search(parts[-1])
        if tail is not None and (tail["state"] or tail["zip"]):
            state, zip_code = tail["state"], tail["zip"]
            rest = parts[-1][: tail.start()].strip()
            parts = [*parts[:-1], rest] if rest else parts[:-1]
            if state is None and parts and re.fullmatch(r"[A-Za-z]{2}", parts[-1]):
                state = parts.pop()
    city = parts.pop() if len(parts) >= 2 else None
    street = " ".join(parts) or None
    return Address(street=street, city=city, state=state, zip=zip_code)


def explain(address: Address, agreement: Agreement) -> list[str]:
    """One line per address field the agreement requires, then the verdict."""
    required = [f for f in agreement.identifying_fields if f.startswith("subject.address.")]
    lines = [
        f"agreement {agreement.id}: accepts street forms {', '.join(f for f in FORMS if f in agreement.address_forms)}"
    ]
    if not required:
        return [*lines, "  requires no address field: any address passes"]
    checks = RequiredFields(required, agreement.placeholder_values, agreement.address_forms)
    missing = dict(checks.missing(_request_with(address, agreement)))
    for path in required:
        field = path.rpartition(".")[2]
        if path in missing:
            lines.append(f"  {path:<24} fails: {missing[path]}")
        elif field == "street" and address.street is not None:
            lines.append(f"  {path:<24} passes: form {classify(normalize(address.street))}")
        else:
            lines.append(f"  {path:<24} passes")
    if missing:
        lines.append("  verdict: a disclosure answering this request raises incomplete_request_disclosure (critical)")
    else:
        lines.append("  verdict: a usable address; it raises nothing")
    return lines


def fields_read(address: Address) -> str:
    """Which fields the text was split into, without their values."""
    found = [name for name in _FIELDS if getattr(address, name)]
    return f"read as {len(found)} field(s): {', '.join(found) or 'none'} (values not shown)"


def _request_with(address: Address, agreement: Agreement) -> Request:
    return Request(
        request_id="explain",
        agreement_id=agreement.id,
        requester=Requester(agency="explain"),
        submitted_at=_ANY_TIME,  # the address checks do not look at it
        subject=Subject(name=Name(last="explain"), address=address),
    )
