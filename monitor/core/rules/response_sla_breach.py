"""A request stayed unanswered past the agreement's ``response_sla`` (operational warning)."""

from __future__ import annotations

from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import RequestFacts


class ResponseSlaBreach:
    rule_id: ClassVar[str] = "response_sla_breach"
    severity: ClassVar[Severity] = "warning"

    def violation(self, request: RequestFacts, sla_ms: int) -> Violation:
        return Violation(
            self.rule_id,
            self.severity,
            f"request unanswered after {sla_ms // 3_600_000}h (agreement SLA)",
            request.submitted_ms + sla_ms,
            "",
            {"sla_seconds": sla_ms // 1000},
        )
