"""Disclosures under an agreement in one UTC day above ``max_disclosures_per_day``: fires the moment
the cap is crossed, once per day and agreement, and resolves when the day closes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.policy import Agreement
from monitor.core.rules.base import WindowedRule, violation_from, violation_state
from monitor.core.timeutil import MS_PER_DAY, format_ms
from monitor.core.windows.counts import WindowCounts


class DailyCapExceeded(WindowedRule):
    rule_id: ClassVar[str] = "daily_cap_exceeded"
    severity: ClassVar[Severity] = "critical"

    def __init__(self) -> None:
        self._days: WindowCounts[str] = WindowCounts(MS_PER_DAY)
        self._fired: dict[tuple[str, int], Violation] = {}

    def on_disclosure(self, agreement: Agreement, at_ms: int) -> list[Violation]:
        cap = agreement.max_disclosures_per_day
        if cap is None:
            return []
        at = at_ms
        self._days.add(agreement.id, at)
        counts = self._days.peek(agreement.id, at)
        if counts is None or counts[0] != cap + 1:
            return []
        day = at - at % MS_PER_DAY
        violation = Violation(
            self.rule_id,
            self.severity,
            f"more than {cap:,} disclosures under the agreement on {format_ms(day)[:10]} (daily cap)",
            at,
            f"day:{format_ms(day)[:10]}",
            {
                "key": f"agreement:{agreement.id}",
                "window_start": format_ms(day),
                "window_end": format_ms(day + MS_PER_DAY),
                "observed": cap + 1,
                "cap": cap,
            },
            agreement_id=agreement.id,
        )
        self._fired[(agreement.id, day)] = violation
        return [violation]

    def on_watermark(self, watermark_ms: int) -> list[Violation]:
        resolved = []
        for agreement_id, day, counts in self._days.close(watermark_ms):
            fired = self._fired.pop((agreement_id, day), None)
            if fired is not None:
                details = dict(fired.details, observed=counts[0])
                resolved.append(
                    Violation(
                        fired.rule,
                        fired.severity,
                        f"day closed with {counts[0]:,} disclosures",
                        day + MS_PER_DAY,
                        fired.discriminator,
                        details,
                        "resolved",
                        fired.agreement_id,
                    )
                )
        return resolved

    def next_due_ms(self) -> int | None:
        return self._days.next_close_ms()

    def snapshot(self) -> Any:
        return {
            "days": self._days.snapshot(),
            "fired": [[agreement, day, violation_state(v)] for (agreement, day), v in self._fired.items()],
        }

    def restore(self, state: Any, agreements: Mapping[str, Agreement]) -> None:
        self._days = WindowCounts.restore(state["days"])
        self._fired = {
            (agreement, day): v for agreement, day, fired in state["fired"] if (v := violation_from(fired)) is not None
        }
