"""Data disclosed although the match is not of the required status, score or keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement


class WeakMatchDisclosure:
    rule_id: ClassVar[str] = "weak_match_disclosure"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = True

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if request is None or agreement is None or agreement.required_match is None:
            return
        required = agreement.required_match
        failed: list[str] = []
        details: dict[str, Any] = {"status": disclosure.match_status, "required_status": required.status}
        if disclosure.match_status != required.status:
            failed.append("status")
        if required.min_score is not None:
            details["score"] = disclosure.match_score
            details["min_score"] = required.min_score
            if disclosure.match_score is None or disclosure.match_score < required.min_score:
                failed.append("score")
        lacking = sorted(required.on - disclosure.matched_on)
        if lacking:
            failed.append("keys")
            details["missing_match_keys"] = lacking
        if not failed:
            return
        details["failed"] = failed
        yield Violation(
            self.rule_id,
            self.severity,
            f"{', '.join(disclosure.fields)} disclosed on a weak match ({', '.join(failed)} below requirement)",
            disclosure.responded_ms,
            disclosure.fingerprint,
            details,
        )
