"""Data disclosed although the request lacked a required identifying field (the IRS-ICE failure)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement
from monitor.core.rules.base import field_list


class IncompleteRequestDisclosure:
    rule_id: ClassVar[str] = "incomplete_request_disclosure"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = True

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if request is None or not request.missing_identifying:
            return
        names = ", ".join(sorted({path.rsplit(".", 1)[-1] for path, _ in request.missing_identifying}))
        yield Violation(
            self.rule_id,
            self.severity,
            f"{', '.join(disclosure.fields)} disclosed for a request missing required field(s): {names}",
            disclosure.responded_ms,
            disclosure.fingerprint,
            {"missing": field_list(request.missing_identifying), "disclosed_fields": list(disclosure.fields)},
        )
