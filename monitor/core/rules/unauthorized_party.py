"""Unknown agreement, a requester or discloser not party to it, or an unauthorized signatory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from monitor.core.events import Request
from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement


class UnauthorizedParty:
    rule_id: ClassVar[str] = "unauthorized_party"
    severity: ClassVar[Severity] = "critical"
    needs_request: ClassVar[bool] = False

    def check_request(self, request: Request, agreement: Agreement | None, event_time_ms: int) -> list[Violation]:
        # A list, not a generator: this runs on every request, and nearly always finds nothing.
        if agreement is None:
            return [
                self._violation("request under an unknown agreement", event_time_ms, "request", "unknown_agreement")
            ]
        found = []
        if request.requester.agency not in agreement.requesters:
            found.append(
                self._violation(
                    "request from an agency that is not party to the agreement",
                    event_time_ms,
                    "request",
                    "requester_not_party",
                )
            )
        signatories = agreement.authorized_signatories
        if signatories is not None and request.requester.signatory not in signatories:
            found.append(
                self._violation(
                    "request signed by someone not among the authorized signatories",
                    event_time_ms,
                    "signatory",
                    "signatory_not_authorized" if request.requester.signatory else "signatory_missing",
                )
            )
        return found

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterator[Violation]:
        if agreement is None:
            yield self._violation(
                "data disclosed under an unknown agreement",
                disclosure.responded_ms,
                f"response:{disclosure.fingerprint}",
                "unknown_agreement",
            )
        elif disclosure.responder not in agreement.disclosers:
            yield self._violation(
                "data disclosed by an agency that is not party to the agreement",
                disclosure.responded_ms,
                f"response:{disclosure.fingerprint}",
                "discloser_not_party",
            )

    def _violation(self, summary: str, at_ms: int, discriminator: str, problem: str) -> Violation:
        return Violation(self.rule_id, self.severity, summary, at_ms, discriminator, {"problem": problem})
