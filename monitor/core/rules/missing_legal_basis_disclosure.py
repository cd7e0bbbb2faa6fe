"""Data disclosed although a required legal-basis field was missing or false."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement
from monitor.core.rules.base import field_list


class MissingLegalBasisDisclosure:
    rule_id: ClassVar[str] = "missing_legal_basis_disclosure"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = True

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if request is None or not request.missing_legal:
            return
        names = ", ".join(path.split(".", 1)[1] for path, _ in request.missing_legal)
        yield Violation(
            self.rule_id,
            self.severity,
            f"{', '.join(disclosure.fields)} disclosed without required legal basis: {names}",
            disclosure.responded_ms,
            disclosure.fingerprint,
            {"missing": field_list(request.missing_legal), "disclosed_fields": list(disclosure.fields)},
        )
