"""The disclosed name differs from the requested name: someone else's data went out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement

_LOW32 = 0xFFFFFFFF


def names_differ(requested: int, disclosed: int) -> bool:
    """Compare packed name keys (last << 32 | first); a first name absent on either side is not compared."""
    if requested >> 32 != disclosed >> 32:
        return True
    first_requested, first_disclosed = requested & _LOW32, disclosed & _LOW32
    return bool(first_requested and first_disclosed and first_requested != first_disclosed)


class SubjectMismatch:
    rule_id: ClassVar[str] = "subject_mismatch"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = True

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if request is None or disclosure.name_key is None:
            return
        if names_differ(request.name_key, disclosure.name_key):
            yield Violation(
                self.rule_id,
                self.severity,
                "the disclosed name differs from the name in the request",
                disclosure.responded_ms,
                disclosure.fingerprint,
                {"disclosed_fields": list(disclosure.fields)},
            )
