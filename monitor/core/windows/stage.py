"""The windowed rules as a stage of their own, fed *facts* and closed by their own watermark.

The join learns, event by event, what the windowed rules count: a request of a batch, a response
(disclosing or not), a new distinct disclosure, a disclosure joined to its request's unit. It hands these
on as window facts (:mod:`monitor.core.windows.facts`), one type each.

In a replay the stage runs inline, in the join's order and on its watermark (monitor/core/detector.py).
In the live worker every worker sends the facts of its partitions to one stage, which then counts the
whole stream whatever the number of workers: windowed rules are about agreements and units, not about
request ids, so they cannot be split by the input partitions. Their results do not depend on arrival
order within the allowed lateness, so both give the same alert ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from monitor.core.findings import Finding, Violation, make_finding
from monitor.core.policy import Policy
from monitor.core.rules import WINDOWED_RULES
from monitor.core.rules.base import WindowedRule
from monitor.core.windows.facts import DisclosureFact, Fact, JoinedFact, RequestFact, ResponseFact

#: What each type of fact hands its hook after the agreement and the time.
_ARGS: dict[type[Fact], Callable[[Any], tuple[Any, ...]]] = {
    RequestFact: lambda fact: (fact.batch_id, fact.agency, fact.unit),
    ResponseFact: lambda fact: (fact.disclosed,),
    DisclosureFact: lambda fact: (),
    JoinedFact: lambda fact: (fact.unit,),
}
#: The rule hook each type of fact goes to.
_HOOK_OF_TYPE: dict[type[Fact], str] = {
    RequestFact: "on_request",
    ResponseFact: "on_response",
    DisclosureFact: "on_disclosure",
    JoinedFact: "on_resolved",
}


class WindowStage:
    def __init__(self, policy: Policy) -> None:
        self.rules: list[WindowedRule] = []
        # Per kind of fact, the rules that implement its hook (most facts matter to one rule, or none).
        self._listeners: dict[type[Fact], tuple[tuple[WindowedRule, Callable[..., list[Violation]]], ...]] = {}
        self.due_ms: int | None = None
        self.max_event_ms: int | None = None
        self.watermark_ms: int | None = None
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        """Judge from now on by ``policy``; a rule already running keeps its windows."""
        self.policy = policy
        running = {type(rule) for rule in self.rules}
        self.rules += [
            cls()
            for cls, setting in WINDOWED_RULES
            if cls not in running and any(getattr(a, setting) is not None for a in policy.agreements.values())
        ]
        self._listeners = {
            kind: tuple(
                (rule, getattr(rule, hook))
                for rule in self.rules
                if getattr(type(rule), hook) is not getattr(WindowedRule, hook)
            )
            for kind, hook in _HOOK_OF_TYPE.items()
        }

    @property
    def active(self) -> bool:
        """Whether some agreement turns a windowed rule on."""
        return bool(self.rules)

    def counted_types(self) -> frozenset[type[Fact]]:
        """The types of fact some rule running counts (the join need not make the others)."""
        return frozenset(kind for kind, listeners in self._listeners.items() if listeners)

    def apply(self, fact: Fact) -> list[Finding]:
        agreement = self.policy.agreement_at(fact.agreement_id, fact.at_ms)  # caps of the version in force then
        if agreement is None:
            return []
        at_ms = fact.at_ms
        if self.max_event_ms is None or at_ms > self.max_event_ms:
            self.max_event_ms = at_ms
        out: list[Finding] = []
        listeners = self._listeners[type(fact)]
        if listeners:
            args = _ARGS[type(fact)](fact)  # what the hook takes after the agreement and the time
            for rule, hook in listeners:
                violations = hook(agreement, at_ms, *args)
                # A fact only opens windows (and batches) that close after its own time: when the stage is due
                # at or before that time already, the rule cannot have become due any earlier.
                if violations or self.due_ms is None or self.due_ms > at_ms:
                    self._collect(rule, violations, out)
        return out

    def advance_to(self, watermark_ms: int) -> Sequence[Finding]:
        """Close what the watermark has passed (never moves it backwards)."""
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        watermark_ms = self.watermark_ms
        if self.due_ms is None or self.due_ms > watermark_ms:
            return ()
        self.due_ms = None
        out: list[Finding] = []
        for rule in self.rules:
            self._collect(rule, rule.on_watermark(watermark_ms), out)
        return out

    def _collect(self, rule: WindowedRule, violations: list[Violation], out: list[Finding]) -> None:
        for violation in violations:
            out.append(self._finding(violation))
        due = rule.next_due_ms()
        if due is not None and (self.due_ms is None or due < self.due_ms):
            self.due_ms = due

    def _finding(self, violation: Violation) -> Finding:
        """Windowed findings are about an agreement or a unit: no request id, no subject."""
        agreement_id = violation.agreement_id or ""
        version = self.policy.version_label(agreement_id, violation.event_time_ms)
        return make_finding(violation, agreement_id, None, violation.requester, None, self.max_event_ms, version)

    def snapshot(self) -> bytes:
        """The rules' state (counts, baselines, what fired), for a worker to keep across a restart."""
        return msgspec.msgpack.encode(
            {
                "rules": {type(rule).rule_id: rule.snapshot() for rule in self.rules},
                "watermark": self.watermark_ms,
                "max_event": self.max_event_ms,
            }
        )

    def restore(self, snapshot: bytes) -> None:
        """Take back a :meth:`snapshot` (of this policy or an earlier one)."""
        saved = msgspec.msgpack.decode(snapshot)
        self.watermark_ms, self.max_event_ms = saved["watermark"], saved["max_event"]
        self.due_ms = None
        for rule in self.rules:
            if type(rule).rule_id in saved["rules"]:
                rule.restore(saved["rules"][type(rule).rule_id], self.policy.agreements)
            self._collect(rule, [], [])
