"""Scenario plans: who asks what when, what is answered, which faults are injected, and the ground truth.

A plan is compact (arrays and a dict of faulted indices) so the 1.28-million
name preset fits in memory; events are rendered from it one at a time.
The ground truth is written from the plan alone, never by running the
detector, so comparing the two is a real test.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field

from monitor.core.timeutil import MS_PER_DAY

HOUR_MS = 3_600_000

# Response outcomes
NO_MATCH, DISCLOSED, NO_RESPONSE = 0, 1, 2

#: Faults the simulator can inject: each is a rule id of SPEC §4 and the findings it must cause.
FAULTS: dict[str, tuple[str, ...]] = {
    "incomplete_request_disclosure": ("incomplete_request_disclosure",),
    "missing_legal_basis_disclosure": ("missing_legal_basis_disclosure",),
    "weak_match_disclosure": ("weak_match_disclosure",),
    "unpermitted_field": ("unpermitted_field",),
    "restricted_disclosure": ("restricted_disclosure",),
    "outside_agreement_period": ("outside_agreement_period",),
    "unauthorized_party": ("unauthorized_party",),
    "subject_mismatch": ("subject_mismatch",),
    "orphan_disclosure": ("orphan_disclosure",),
    "duplicate_disclosure": ("duplicate_disclosure",),
    "response_sla_breach": ("response_sla_breach",),
    "disposal_overdue": ("incomplete_request_disclosure", "disposal_overdue"),
}
#: Faults whose disclosure is improper (critical): the recipient disposes of it,
#: unless the fault is the overdue disposal.
IMPROPER = frozenset(FAULTS) - {"duplicate_disclosure", "response_sla_breach"}


@dataclass(slots=True)
class Plan:
    seed: int
    scenario: str
    agreement_id: str
    submit_ms: array[int] = field(default_factory=lambda: array("q"))
    respond_ms: array[int] = field(default_factory=lambda: array("q"))
    outcome: bytearray = field(default_factory=bytearray)
    junk_request: bytearray = field(default_factory=bytearray)  # 1: the request's address is junk
    faults: dict[int, str] = field(default_factory=dict)
    unit_of: bytearray = field(default_factory=bytearray)
    batch_id: str | None = None  # one batch for every request (the irs-ice-2025 preset)
    batch_of: dict[int, str] = field(default_factory=dict)  # batches of some requests
    windowed: list[tuple[str, str, int]] = field(default_factory=list)  # (fault, key, start ms)
    max_per_day: int | None = None
    max_batch: int | None = None
    disposals: bool = True  # recipients confirm disposal of improper disclosures (not in the real case)

    def __len__(self) -> int:
        return len(self.submit_ms)


UNITS = ("ERO Atlanta", "ERO Chicago", "ERO Houston", "ERO Phoenix", "HSI Newark", "ERO Miami")


def office_time_ms(rng: random.Random, start_ms: int, days: int, day_factor: list[float] | None = None) -> int:
    """A request time with weekday/office-hours seasonality (weekends and nights are quiet)."""
    while True:
        day = rng.randrange(days)
        weekday = (start_ms // MS_PER_DAY + day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        if weekday >= 5 and rng.random() > 0.15:
            continue
        if day_factor is not None and rng.random() * 1.6 > day_factor[day]:
            continue
        hour = rng.gauss(13.0, 2.5) if rng.random() < 0.9 else rng.uniform(0, 24)
        if 0 <= hour < 24:
            return start_ms + day * MS_PER_DAY + int(hour * HOUR_MS)


#: Aggregate faults, injected once warm-up is over, and the findings (rule, what about) they must cause.
WINDOWED_FAULTS: dict[str, tuple[str, ...]] = {
    "volume_spike": ("disclosure_rate_spike",),
    "ratio_shift": ("disclosure_ratio_drift",),
    "runaway_batch": ("oversized_batch", "daily_cap_exceeded", "disclosure_rate_spike"),
    "irs_ice_batch": ("oversized_batch", "daily_cap_exceeded"),  # built into the irs-ice-2025 preset
}
#: Units differ in size; the spike hits a mid-sized one, the runaway batch the smallest.
UNIT_SHARES = (0.30, 0.22, 0.16, 0.13, 0.11, 0.08)
SPIKE_UNIT, RUNAWAY_UNIT = 2, 5
WARMUP_DAYS = 8  # windowed baselines learn for this long before windowed faults are injected


def first_weekday_at_or_after(ms: int) -> int:
    day = -(-ms // MS_PER_DAY)
    while (day + 3) % 7 >= 5:
        day += 1
    return day * MS_PER_DAY


def plan_default(
    seed: int,
    requests: int,
    start_ms: int,
    days: int,
    faults: list[str],
    fault_start_ms: int,
    fault_rate: float,
    disclosure_ratio: float = 0.05,
) -> Plan:
    """Clean office traffic under one agreement, with the given faults injected after ``fault_start_ms``.

    Per-request faults hit a share ``fault_rate`` of requests; windowed faults happen once each, on weekdays
    after a warm-up: a 10x volume spike of one unit (day W, 10:00-13:00 UTC), a runaway batch (W+2, 08:00),
    and the disclosure ratio doubling from W+4 on.
    """
    rng = random.Random(seed)
    plan = Plan(seed, "default", "tax-enforcement-2025")
    per_request = [f for f in faults if f in FAULTS]
    windowed_at = first_weekday_at_or_after(max(fault_start_ms, start_ms + WARMUP_DAYS * MS_PER_DAY))
    shift_at = first_weekday_at_or_after(windowed_at + 4 * MS_PER_DAY) if "ratio_shift" in faults else None
    day_factor = [rng.lognormvariate(0, 0.15) for _ in range(days)]  # busy and quiet days
    times = sorted(office_time_ms(rng, start_ms, days, day_factor) for _ in range(requests))
    for submitted in times:
        ratio = disclosure_ratio * (2 if shift_at is not None and submitted >= shift_at else 1)
        _add_request(plan, rng, submitted, _pick_unit(rng), ratio)
    if "volume_spike" in faults:
        spike_at = windowed_at + 10 * HOUR_MS
        per_hour = sum(1 for i in range(len(plan)) if plan.unit_of[i] == SPIKE_UNIT) / max(days * 5 / 7 * 8, 1)
        for _ in range(int(per_hour * 9 * 3)):  # nine times the usual on top of it: ten times its volume, 3 hours
            _add_request(plan, rng, spike_at + rng.randrange(3 * HOUR_MS), SPIKE_UNIT, disclosure_ratio)
        plan.windowed.append(("volume_spike", f"unit:{UNITS[SPIKE_UNIT]}", spike_at))
    if shift_at is not None:
        plan.windowed.append(("ratio_shift", f"agreement:{plan.agreement_id}", shift_at))
    plan.max_per_day, plan.max_batch = _caps(plan, days)
    if "runaway_batch" in faults:
        runaway_at = first_weekday_at_or_after(windowed_at + 2 * MS_PER_DAY) + 8 * HOUR_MS
        for _ in range(plan.max_batch * 3):
            index = _add_request(plan, rng, runaway_at + rng.randrange(HOUR_MS), RUNAWAY_UNIT, disclosure_ratio)
            plan.batch_of[index] = "runaway-batch"
            plan.respond_ms[index] = plan.submit_ms[index] + 60_000 + rng.randrange(6 * HOUR_MS)
        plan.windowed.append(("runaway_batch", "runaway-batch", runaway_at))
    for index, submitted in enumerate(plan.submit_ms):
        if per_request and submitted >= fault_start_ms and index not in plan.batch_of and rng.random() < fault_rate:
            plan.faults[index] = per_request[rng.randrange(len(per_request))]
    _ensure_each_fault(plan, per_request, fault_start_ms, rng)
    for index, fault in plan.faults.items():
        if fault == "response_sla_breach":
            plan.outcome[index] = NO_RESPONSE
        else:
            plan.outcome[index] = DISCLOSED
        plan.junk_request[index] = fault in ("incomplete_request_disclosure", "disposal_overdue")
    return plan


def _pick_unit(rng: random.Random) -> int:
    return rng.choices(range(len(UNITS)), UNIT_SHARES)[0]


def _add_request(plan: Plan, rng: random.Random, submitted: int, unit: int, ratio: float) -> int:
    plan.submit_ms.append(submitted)
    plan.unit_of.append(unit)
    junk = rng.random() < 0.08
    plan.junk_request.append(junk)
    # Clean traffic: junk addresses are never matched; good ones disclose at the given ratio.
    plan.outcome.append(DISCLOSED if not junk and rng.random() < ratio else NO_MATCH)
    delay = min(int(rng.lognormvariate(0, 1.0) * 2 * HOUR_MS), 48 * HOUR_MS)
    plan.respond_ms.append(submitted + 60_000 + delay)
    return len(plan) - 1


def _caps(plan: Plan, days: int) -> tuple[int, int]:
    """Caps well above clean traffic: three times the busiest day's disclosures; batches ten times that."""
    per_day: dict[int, int] = {}
    for index in range(len(plan)):
        if plan.outcome[index] == DISCLOSED:
            day = plan.respond_ms[index] // MS_PER_DAY
            per_day[day] = per_day.get(day, 0) + 1
    max_per_day = max(20, 3 * max(per_day.values(), default=0))
    return max_per_day, 10 * max_per_day


def _ensure_each_fault(plan: Plan, faults: list[str], fault_start_ms: int, rng: random.Random) -> None:
    """Every requested fault occurs at least once, however small the scenario."""
    eligible = [
        i
        for i in range(len(plan))
        if plan.submit_ms[i] >= fault_start_ms and i not in plan.faults and i not in plan.batch_of
    ]
    for fault in faults:
        if fault not in plan.faults.values() and eligible:
            plan.faults[eligible.pop(rng.randrange(len(eligible)))] = fault


# The public record of the IRS-ICE case (see README): 1.28 million names checked, 47,289 answered with an
# address on 7 August 2025, about 42,695 of them although the request carried no usable address.
IRS_ICE_REQUESTS = 1_280_000
IRS_ICE_DISCLOSED = 47_289
IRS_ICE_IMPROPER = 42_695


def plan_irs_ice(seed: int, requests: int, june_batch_ms: int, august_answer_ms: int) -> Plan:
    """The irs-ice-2025 preset at ``requests`` names, proportions as publicly reported."""
    rng = random.Random(seed)
    plan = Plan(seed, "irs-ice-2025", "irs-ice-2025", batch_id="ice-batch-2025-06", disposals=False)
    # The caps of SPEC §3's example (10,000 per batch, 5,000 disclosures a day), scaled with the scenario.
    scale = requests / IRS_ICE_REQUESTS
    plan.max_batch, plan.max_per_day = max(1, round(10_000 * scale)), max(1, round(5_000 * scale))
    disclosed = round(IRS_ICE_DISCLOSED * requests / IRS_ICE_REQUESTS)
    improper = round(IRS_ICE_IMPROPER * requests / IRS_ICE_REQUESTS)
    junk_share = 0.12  # requests carrying placeholder or zip-only addresses
    order = list(range(requests))
    rng.shuffle(order)
    junk = set(order[: max(improper, int(requests * junk_share))])
    improper_set = set(order[:improper])
    clean_disclosed = set(i for i in order[improper:] if i not in junk)
    clean_disclosed = set(sorted(clean_disclosed)[: disclosed - improper])
    answer_span = 10 * HOUR_MS
    for index in range(requests):
        plan.submit_ms.append(june_batch_ms + index * 8 * HOUR_MS // max(requests, 1))
        plan.unit_of.append(rng.randrange(len(UNITS)))
        plan.junk_request.append(index in junk)
        plan.outcome.append(DISCLOSED if index in improper_set or index in clean_disclosed else NO_MATCH)
        plan.respond_ms.append(august_answer_ms + index * answer_span // max(requests, 1))
        if index in improper_set:
            plan.faults[index] = "incomplete_request_disclosure"
    plan.windowed.append(("irs_ice_batch", "ice-batch-2025-06", june_batch_ms))
    return plan
