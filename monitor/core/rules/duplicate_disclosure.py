"""A request answered with a disclosure more than once (redeliveries of one message do not count)."""

from __future__ import annotations

from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts


class DuplicateDisclosure:
    rule_id: ClassVar[str] = "duplicate_disclosure"
    severity: ClassVar[Severity] = "warning"

    def violation(self, disclosures: list[DisclosureFacts]) -> Violation:
        latest = max(disclosures, key=lambda d: d.responded_ms)
        return Violation(
            self.rule_id,
            self.severity,
            "the same request was answered with a disclosure more than once",
            latest.responded_ms,
            "",  # one finding per request, whatever the arrival order
            {"disclosures": len(disclosures), "disclosed_fields": sorted({f for d in disclosures for f in d.fields})},
        )
