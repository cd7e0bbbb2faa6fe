"""A requester unit's disclosures in a window far above that unit's own seasonal baseline.

Hopping windows (default 1 h every 15 min) per (agreement, unit), closed by the
watermark. A disclosure counts when it is joined to its request (that is where
the unit comes from); a request arriving within the allowed lateness always
finds its response's window still open, so the count does not depend on
arrival order. Orphans have no unit and their own rule. The baseline is an
EWMA per seasonal slot — weekday or weekend, and hour of day (UTC) — fed with
every closed window, zeros included, winsorised so a spike does not become
the new normal. A window alerts only when all three hold: the count is at
least ``min_count``, at least ``factor`` times the baseline, and its Poisson
tail probability under the baseline is below ``max_p_value``; and only once
the slot has seen ``warmup_windows`` windows. One alert per episode, with
hysteresis: while it fires the baseline is frozen, and it resolves at the
first window under half the firing thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from monitor.core.findings import Severity, Violation
from monitor.core.policy import Agreement, RateSpikeConfig
from monitor.core.rules.base import WindowedRule, violation_from, violation_state
from monitor.core.timeutil import MS_PER_DAY, format_ms
from monitor.core.windows.counts import WindowCounts
from monitor.core.windows.stats import poisson_sf

_HOUR_MS = 3_600_000
_MAX_GAP_FILL_MS = 7 * MS_PER_DAY  # a unit silent for longer starts its zero-filling afresh
_MIN_BASELINE = 0.25  # expected count floor: a unit that never discloses at 3 am is not a zero-rate process

Key = tuple[str, str]  # (agreement id, requester unit)


def seasonal_slot(start_ms: int) -> int:
    """0-23 for weekday hours, 24-47 for weekend hours (UTC)."""
    weekday = (start_ms // MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    return (24 if weekday >= 5 else 0) + (start_ms % MS_PER_DAY) // _HOUR_MS


class _UnitState:
    __slots__ = ("baseline", "firing", "last_start", "observed")

    def __init__(self) -> None:
        self.baseline = [0.0] * 48
        self.observed = [0] * 48
        self.last_start: int | None = None
        self.firing: Violation | None = None


class DisclosureRateSpike(WindowedRule):
    rule_id: ClassVar[str] = "disclosure_rate_spike"
    severity: ClassVar[Severity] = "warning"

    def __init__(self) -> None:
        self._windows: dict[str, WindowCounts[Key]] = {}  # per agreement (its window shape and grace)
        self._configs: dict[str, RateSpikeConfig] = {}
        self._units: dict[Key, _UnitState] = {}

    def on_resolved(self, agreement: Agreement, at_ms: int, unit: str | None) -> list[Violation]:
        config = agreement.rate_spike
        if config is None:
            return []
        windows = self._windows.get(agreement.id)
        if windows is None:
            windows = self._windows[agreement.id] = WindowCounts(config.window_ms, config.hop_ms)
            self._configs[agreement.id] = config
        windows.add((agreement.id, unit or "(no unit)"), at_ms)
        return []

    def on_watermark(self, watermark_ms: int) -> list[Violation]:
        found: list[Violation] = []
        for agreement_id, windows in self._windows.items():
            config = self._configs[agreement_id]
            for key, start, counts in windows.close(watermark_ms):
                state = self._units.get(key)
                if state is None:
                    state = self._units[key] = _UnitState()
                self._fill_gap(state, start, config)
                found += self._judge(key, state, start, counts[0], config)
        found += self._quiet_windows(watermark_ms)
        return found

    def _quiet_windows(self, watermark_ms: int) -> list[Violation]:
        """A unit whose spike stopped dead has no windows to close: judge its empty windows so it resolves."""
        found: list[Violation] = []
        for key, state in self._units.items():
            config = self._configs[key[0]]
            while state.firing is not None and state.last_start is not None:
                start = state.last_start + config.hop_ms
                if start + config.window_ms > watermark_ms:
                    break
                state.last_start = start
                found += self._judge(key, state, start, 0, config)
        return found

    def _fill_gap(self, state: _UnitState, start: int, config: RateSpikeConfig) -> None:
        """Windows with no disclosures never open: feed their zeros to the baseline."""
        previous = state.last_start
        state.last_start = start
        if previous is None or start - previous > _MAX_GAP_FILL_MS:
            return
        for gap_start in range(previous + config.hop_ms, start, config.hop_ms):
            self._learn(state, seasonal_slot(gap_start), 0, config)

    def _learn(self, state: _UnitState, slot: int, count: int, config: RateSpikeConfig) -> None:
        seen = state.observed[slot]
        if seen:
            expected = max(state.baseline[slot], _MIN_BASELINE)
            count_used = min(count, config.factor * expected)  # winsorise: a spike is not the new normal
            state.baseline[slot] += config.ewma_alpha * (count_used - state.baseline[slot])
        else:
            state.baseline[slot] = float(count)
        state.observed[slot] = seen + 1

    def _judge(self, key: Key, state: _UnitState, start: int, count: int, config: RateSpikeConfig) -> list[Violation]:
        slot = seasonal_slot(start)
        expected = max(state.baseline[slot], _MIN_BASELINE)
        spike = (
            state.observed[slot] >= config.warmup_windows
            and count >= config.min_count
            and count >= config.factor * expected
            and poisson_sf(count, expected) < config.max_p_value
        )
        agreement_id, unit = key
        details = {
            "key": f"unit:{unit}",
            "window_start": format_ms(start),
            "window_end": format_ms(start + config.window_ms),
            "observed": count,
            "baseline": round(expected, 3),
        }
        if state.firing is None:
            self._learn(state, slot, count, config)
            if not spike:
                return []
            state.firing = Violation(
                self.rule_id,
                self.severity,
                f"disclosures for one unit at {count} in {config.window_ms // 60_000} min, {count / expected:.0f}x "
                f"its usual",
                start + config.window_ms,
                f"unit:{unit}:{start}",
                details,
                agreement_id=agreement_id,
                requester={"agency": None, "unit": unit},
            )
            return [state.firing]
        if count >= config.min_count / 2 and count >= config.factor / 2 * expected:
            return []  # still elevated: the episode goes on, and the baseline does not learn from it
        fired, state.firing = state.firing, None
        self._learn(state, slot, count, config)
        return [
            Violation(
                fired.rule,
                fired.severity,
                "disclosure rate back within the unit's baseline",
                start + config.window_ms,
                fired.discriminator,
                details,
                "resolved",
                fired.agreement_id,
                fired.requester,
            )
        ]

    def next_due_ms(self) -> int | None:
        dues = [due for windows in self._windows.values() if (due := windows.next_close_ms()) is not None]
        dues += [
            state.last_start + self._configs[key[0]].hop_ms + self._configs[key[0]].window_ms
            for key, state in self._units.items()
            if state.firing is not None and state.last_start is not None
        ]
        return min(dues) if dues else None

    def snapshot(self) -> Any:
        return {
            "windows": {agreement: windows.snapshot() for agreement, windows in self._windows.items()},
            "units": [
                [agreement, unit, s.baseline, s.observed, s.last_start, violation_state(s.firing)]
                for (agreement, unit), s in self._units.items()
            ],
        }

    def restore(self, state: Any, agreements: Mapping[str, Agreement]) -> None:
        self._windows, self._configs, self._units = {}, {}, {}
        for agreement_id, windows in state["windows"].items():
            agreement = agreements.get(agreement_id)
            config = agreement.rate_spike if agreement else None
            counts = WindowCounts.restore(windows)
            if config is not None and counts.same_shape(config.window_ms, config.hop_ms):
                self._windows[agreement_id], self._configs[agreement_id] = counts, config
        for agreement_id, unit, baseline, observed, last_start, firing in state["units"]:
            if agreement_id in self._configs:
                unit_state = self._units[(agreement_id, unit)] = _UnitState()
                unit_state.baseline, unit_state.observed = list(baseline), list(observed)
                unit_state.last_start, unit_state.firing = last_start, violation_from(firing)
