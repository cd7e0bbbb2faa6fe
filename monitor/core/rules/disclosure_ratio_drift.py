"""The share of responses that disclose data, per agreement, moving far from its baseline.

Tumbling windows (default 1 h) of (responses, disclosing responses) per
agreement, judged when the watermark closes them — in window order, so the
result does not depend on arrival order. A one-sided Bernoulli CUSUM tests
the baseline ratio p0 against ``shift`` x p0: each window adds its
log-likelihood ratio, the sum floors at zero, and crossing ``threshold``
alerts. A shift from 4 % to 8 % adds about 0.016 per response, so the
default threshold of 15 is crossed after roughly a thousand responses.
The baseline is learnt over ``warmup_responses`` and then follows the
stream slowly (an exponentially decayed count of responses and disclosures)
from every window, through a guard band: a window is learnt only
``LEARN_LAG_WINDOWS`` windows after it closed, so a shift is judged against
the ratio from before it rather than absorbed; windows pending when an alert
fires are dropped. (Learning only from windows that leave the CUSUM at zero
would feed it the low windows and not the high ones, biasing it down until
clean traffic alarms.) The alert resolves when the CUSUM returns to zero.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.policy import Agreement, RatioDriftConfig
from monitor.core.rules.base import WindowedRule, violation_from, violation_state
from monitor.core.timeutil import format_ms
from monitor.core.windows.counts import WindowCounts
from monitor.core.windows.stats import bernoulli_llr

LEARN_LAG_WINDOWS = 24


class _AgreementState:
    __slots__ = ("config", "cusum", "disclosed", "firing", "pending", "responses", "warm", "windows")

    def __init__(self, config: RatioDriftConfig) -> None:
        self.config = config
        self.windows: WindowCounts[str] = WindowCounts(config.window_ms, fields=2)
        self.responses = 0.0  # (decayed) baseline counts
        self.disclosed = 0.0
        self.warm = False
        self.cusum = 0.0
        self.firing: Violation | None = None
        self.pending: deque[tuple[int, int]] = deque()  # closed windows waiting to be learnt


class DisclosureRatioDrift(WindowedRule):
    rule_id: ClassVar[str] = "disclosure_ratio_drift"
    severity: ClassVar[Severity] = "warning"

    def __init__(self) -> None:
        self._agreements: dict[str, _AgreementState] = {}

    def on_response(self, agreement: Agreement, at_ms: int, disclosed: bool) -> list[Violation]:
        if agreement.ratio_drift is None:
            return []
        state = self._agreements.get(agreement.id)
        if state is None:
            state = self._agreements[agreement.id] = _AgreementState(agreement.ratio_drift)
        state.windows.add(agreement.id, at_ms, 0)
        if disclosed:
            state.windows.add(agreement.id, at_ms, 1)
        return []

    def on_watermark(self, watermark_ms: int) -> list[Violation]:
        found: list[Violation] = []
        for agreement_id, state in self._agreements.items():
            for _key, start, (responses, disclosed) in state.windows.close(watermark_ms):
                found += self._judge(agreement_id, state, start, responses, disclosed)
        return found

    def _judge(self, agreement_id: str, state: _AgreementState, start: int, n: int, k: int) -> list[Violation]:
        config = state.config
        if not state.warm:
            state.responses += n
            state.disclosed += k
            state.warm = state.responses >= config.warmup_responses and state.disclosed > 0
            return []
        p0 = min(max(state.disclosed / state.responses, 1e-6), 0.5)
        p1 = min(config.shift * p0, 0.999)
        state.cusum = max(0.0, state.cusum + bernoulli_llr(k, n, p0, p1))
        details = {
            "key": f"agreement:{agreement_id}",
            "window_start": format_ms(start),
            "window_end": format_ms(start + config.window_ms),
            "observed": round(k / n, 4) if n else None,
            "responses": n,
            "baseline": round(p0, 4),
            "cusum": round(state.cusum, 2),
        }
        if state.firing is None:
            state.pending.append((n, k))
            if len(state.pending) > LEARN_LAG_WINDOWS:
                old_n, old_k = state.pending.popleft()
                decay = 1 - config.ewma_alpha
                state.responses = state.responses * decay + old_n
                state.disclosed = state.disclosed * decay + old_k
        if state.cusum == 0.0:
            if state.firing is not None:
                fired, state.firing = state.firing, None
                return [
                    Violation(
                        fired.rule,
                        fired.severity,
                        "disclosure ratio back at its baseline",
                        start + config.window_ms,
                        fired.discriminator,
                        details,
                        "resolved",
                        agreement_id,
                    )
                ]
            return []
        if state.cusum > config.threshold and state.firing is None:
            state.pending.clear()  # the windows just before the alert are likely part of the shift
            state.firing = Violation(
                self.rule_id,
                self.severity,
                f"share of responses disclosing data drifted from {p0:.1%} (window: {k}/{n})",
                start + config.window_ms,
                f"agreement:{agreement_id}:{start}",
                details,
                agreement_id=agreement_id,
            )
            return [state.firing]
        return []

    def next_due_ms(self) -> int | None:
        dues = [due for s in self._agreements.values() if (due := s.windows.next_close_ms()) is not None]
        return min(dues) if dues else None

    def snapshot(self) -> Any:
        return {
            agreement: {
                "windows": s.windows.snapshot(),
                "responses": s.responses,
                "disclosed": s.disclosed,
                "warm": s.warm,
                "cusum": s.cusum,
                "firing": violation_state(s.firing),
                "pending": list(s.pending),
            }
            for agreement, s in self._agreements.items()
        }

    def restore(self, state: Any, agreements: Mapping[str, Agreement]) -> None:
        self._agreements = {}
        for agreement_id, saved in state.items():
            agreement = agreements.get(agreement_id)
            config = agreement.ratio_drift if agreement else None
            windows = WindowCounts.restore(saved["windows"])
            if config is None or not windows.same_shape(config.window_ms):
                continue
            s = self._agreements[agreement_id] = _AgreementState(config)
            s.windows, s.responses, s.disclosed = windows, saved["responses"], saved["disclosed"]
            s.warm, s.cusum, s.firing = saved["warm"], saved["cusum"], violation_from(saved["firing"])
            s.pending = deque((n, k) for n, k in saved["pending"])
