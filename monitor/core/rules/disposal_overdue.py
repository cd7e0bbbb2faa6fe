"""An improper disclosure not followed by a confirmed disposal within ``disposal_deadline``."""

from __future__ import annotations

from typing import ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts
from monitor.core.timeutil import format_ms


class DisposalOverdue:
    rule_id: ClassVar[str] = "disposal_overdue"
    severity: ClassVar[Severity] = "warning"

    def violation(self, disclosure: DisclosureFacts, deadline_ms: int) -> Violation:
        return Violation(
            self.rule_id,
            self.severity,
            "improperly disclosed data was not confirmed disposed by the deadline",
            disclosure.responded_ms + deadline_ms,
            disclosure.fingerprint,
            {"disclosed_at": format_ms(disclosure.responded_ms), "deadline_seconds": deadline_ms // 1000},
        )
