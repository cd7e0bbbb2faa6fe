"""Requests sharing one ``batch_id`` above ``max_batch_size``: fires the moment the batch crosses the
cap (before its answers go out), once per batch; resolves when the batch has been quiet for the join window."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.policy import Agreement
from monitor.core.rules.base import WindowedRule, violation_from, violation_state

_SWEEP_EVERY_MS = 3_600_000


class OversizedBatch(WindowedRule):
    rule_id: ClassVar[str] = "oversized_batch"
    severity: ClassVar[Severity] = "critical"

    def __init__(self) -> None:
        # (agreement, batch) -> [requests, newest request time, join window, fired?]
        self._batches: dict[tuple[str, str], list[int]] = {}
        self._fired: dict[tuple[str, str], Violation] = {}
        self._next_sweep_ms: int | None = None

    def on_request(
        self, agreement: Agreement, at_ms: int, batch_id: str | None, agency: str, unit: str | None
    ) -> list[Violation]:
        cap, batch = agreement.max_batch_size, batch_id
        if cap is None or not batch:
            return []
        key = (agreement.id, batch)
        state = self._batches.get(key)
        if state is None:
            state = self._batches[key] = [0, at_ms, agreement.join_window_ms]
            if self._next_sweep_ms is None:
                self._next_sweep_ms = at_ms + _SWEEP_EVERY_MS
        state[0] += 1
        state[1] = max(state[1], at_ms)
        if state[0] != cap + 1:
            return []
        violation = Violation(
            self.rule_id,
            self.severity,
            f"a batch of requests grew past the agreement's limit of {cap:,}",
            at_ms,
            f"batch:{batch}",
            {"key": f"batch:{batch}", "observed": cap + 1, "cap": cap},
            agreement_id=agreement.id,
            requester={"agency": agency, "unit": unit},
        )
        self._fired[key] = violation
        return [violation]

    def on_watermark(self, watermark_ms: int) -> list[Violation]:
        if self._next_sweep_ms is None or watermark_ms < self._next_sweep_ms:
            return []
        self._next_sweep_ms = watermark_ms + _SWEEP_EVERY_MS if self._batches else None
        resolved = []
        for key, (count, newest_ms, window_ms) in list(self._batches.items()):
            if watermark_ms < newest_ms + window_ms:
                continue
            del self._batches[key]
            fired = self._fired.pop(key, None)
            if fired is not None:
                resolved.append(
                    Violation(
                        fired.rule,
                        fired.severity,
                        f"batch quiet; it held {count:,} requests",
                        newest_ms + window_ms,
                        fired.discriminator,
                        dict(fired.details, observed=count),
                        "resolved",
                        fired.agreement_id,
                        fired.requester,
                    )
                )
        if not self._batches:
            self._next_sweep_ms = None
        return resolved

    def next_due_ms(self) -> int | None:
        return self._next_sweep_ms

    def snapshot(self) -> Any:
        return {
            "batches": [[agreement, batch, values] for (agreement, batch), values in self._batches.items()],
            "fired": [[agreement, batch, violation_state(v)] for (agreement, batch), v in self._fired.items()],
            "next_sweep": self._next_sweep_ms,
        }

    def restore(self, state: Any, agreements: Mapping[str, Agreement]) -> None:
        self._batches = {(agreement, batch): list(values) for agreement, batch, values in state["batches"]}
        self._fired = {
            (agreement, batch): v
            for agreement, batch, fired in state["fired"]
            if (v := violation_from(fired)) is not None
        }
        self._next_sweep_ms = state["next_sweep"]
