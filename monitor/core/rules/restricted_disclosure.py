"""A field disclosed while a restriction (court order, injunction, suspension) covering it was in force."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement
from monitor.core.timeutil import format_ms


class RestrictedDisclosure:
    rule_id: ClassVar[str] = "restricted_disclosure"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = False

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if agreement is None:
            return
        requester = request.agency if request else None
        for index, restriction in enumerate(agreement.restrictions):
            fields = [f for f in disclosure.fields if restriction.forbids(f, disclosure.responded_ms, requester)]
            if fields:
                yield Violation(
                    self.rule_id,
                    self.severity,
                    f"{', '.join(fields)} disclosed while a restriction was in force: {restriction.reason}",
                    disclosure.responded_ms,
                    f"{disclosure.fingerprint}:{index}",
                    {
                        "restricted_fields": fields,
                        "restriction": index,
                        "restriction_reason": restriction.reason,
                        "restriction_from": format_ms(restriction.from_ms),
                    },
                )
