"""A response disclosed data and no request with its id arrived within the grace period."""

from __future__ import annotations

from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts
from monitor.core.timeutil import format_ms


class OrphanDisclosure:
    rule_id: ClassVar[str] = "orphan_disclosure"
    severity: ClassVar[Severity] = "critical"

    def violation(self, disclosure: DisclosureFacts, grace_ms: int) -> Violation:
        return Violation(
            self.rule_id,
            self.severity,
            f"{', '.join(disclosure.fields)} disclosed in answer to a request nobody made",
            disclosure.responded_ms,
            disclosure.fingerprint,
            {
                "disclosed_fields": list(disclosure.fields),
                "grace_seconds": grace_ms // 1000,
                "waited_until": format_ms(disclosure.responded_ms + grace_ms),
            },
        )
