"""A disclosed field that the agreement does not permit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement


class UnpermittedField:
    rule_id: ClassVar[str] = "unpermitted_field"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = True

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if agreement is None:
            return  # unauthorized_party reports an unknown agreement
        extra = [f for f in disclosure.fields if f not in agreement.permitted_fields]
        if not extra:
            return
        yield Violation(
            self.rule_id,
            self.severity,
            f"field(s) not permitted by the agreement were disclosed: {', '.join(extra)}",
            disclosure.responded_ms,
            disclosure.fingerprint,
            {"unpermitted_fields": extra, "permitted_fields": sorted(agreement.permitted_fields)},
        )
