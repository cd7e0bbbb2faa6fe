"""The shapes a rule can take. A rule is a small class with a stable ``rule_id`` and a ``severity``.

* :class:`RequestRule` looks at one request when it arrives.
* :class:`DisclosureRule` looks at one disclosing response when it is *resolved*:
  joined to its request, or declared an orphan after the grace period. Rules
  with ``needs_request`` only run on joined pairs.
* Timed and state rules (SLA, orphan, duplicate, disposal) are driven by the
  detector's join state and watermark; they only build the violation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol

import msgspec

from monitor.core.events import Request
from monitor.core.findings import Severity, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement


class RuleClass(Protocol):
    """What every rule has: its stable id and severity."""

    rule_id: ClassVar[str]
    severity: ClassVar[Severity]


class RequestRule(Protocol):
    rule_id: ClassVar[str]
    severity: ClassVar[Severity]

    def check_request(
        self, request: Request, agreement: Agreement | None, event_time_ms: int
    ) -> Iterable[Violation]: ...


class DisclosureRule(Protocol):
    rule_id: ClassVar[str]
    severity: ClassVar[Severity]
    needs_request: ClassVar[bool]

    def check_disclosure(
        self, disclosure: DisclosureFacts, request: RequestFacts | None, agreement: Agreement | None
    ) -> Iterable[Violation]: ...


def field_list(missing: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"field": path, "check": check} for path, check in missing]


class WindowedRule:
    """A rule over aggregates (caps, batches, rates, ratios): stateful, one instance per detector.

    The window stage (monitor/core/windows/stage.py) calls the hooks with what the
    detector learnt and ``on_watermark`` when the watermark passes ``next_due_ms()``.
    Every hook returns the violations it makes; windowed violations name their own agreement (and requester, if any)
    and may be ``resolved`` when the condition clears, under the same
    discriminator (so the same alert id) as the firing.
    """

    rule_id: ClassVar[str]
    severity: ClassVar[Severity]

    def on_request(
        self, agreement: Agreement, at_ms: int, batch_id: str | None, agency: str, unit: str | None
    ) -> list[Violation]:
        """A request seen for the first time."""
        return []

    def on_response(self, agreement: Agreement, at_ms: int, disclosed: bool) -> list[Violation]:
        return []

    def on_disclosure(self, agreement: Agreement, at_ms: int) -> list[Violation]:
        """A new distinct disclosure, at arrival (before it is joined)."""
        return []

    def on_resolved(self, agreement: Agreement, at_ms: int, unit: str | None) -> list[Violation]:
        """A disclosure joined to its request (of ``unit``)."""
        return []

    def on_watermark(self, watermark_ms: int) -> list[Violation]:
        return []

    def next_due_ms(self) -> int | None:
        return None

    def snapshot(self) -> Any:
        """The rule's state as plain data (msgpack-able), for a worker to keep across a restart."""
        raise NotImplementedError

    def restore(self, state: Any, agreements: Mapping[str, Agreement]) -> None:
        """Take back a :meth:`snapshot`. Agreements whose settings for this rule are gone, or whose window
        shape changed since, start afresh."""
        raise NotImplementedError


def violation_state(violation: Violation | None) -> Any:
    return None if violation is None else msgspec.to_builtins(violation)


def violation_from(state: Any) -> Violation | None:
    return None if state is None else msgspec.convert(state, Violation)
