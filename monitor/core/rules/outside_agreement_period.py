"""A disclosure before the agreement took effect or after it ended."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement
from monitor.core.timeutil import format_ms


class OutsideAgreementPeriod:
    rule_id: ClassVar[str] = "outside_agreement_period"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = False

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if agreement is None:
            return
        at = disclosure.responded_ms
        if at < agreement.effective_from_ms:
            where = "before the agreement took effect"
        elif agreement.effective_until_ms is not None and at >= agreement.effective_until_ms:
            where = "after the agreement ended"
        else:
            return
        details = {"effective_from": format_ms(agreement.effective_from_ms)}
        if agreement.effective_until_ms is not None:
            details["effective_until"] = format_ms(agreement.effective_until_ms)
        yield Violation(self.rule_id, self.severity, f"data disclosed {where}", at, disclosure.fingerprint, details)
