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

from monitor.timeutil import MS_PER_DAY

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
#: Faults whose disclosure is improper (critical): the recipient disposes of it unless the fault is the overdue disposal.
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
    batch_id: str | None = None
    disposals: bool = True  # recipients confirm disposal of improper disclosures (not in the real case)

    def __len__(self) -> int:
        return len(self.submit_ms)


UNITS = ("ERO Atlanta", "ERO Chicago", "ERO Houston", "ERO Phoenix", "HSI Newark", "ERO Miami")


def office_time_ms(rng: random.Random, start_ms: int, days: int) -> int:
    """A request time with weekday/office-hours seasonality (weekends and nights are quiet)."""
    while True:
        day = rng.randrange(days)
        weekday = (start_ms // MS_PER_DAY + day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        if weekday >= 5 and rng.random() > 0.15:
            continue
        hour = rng.gauss(13.0, 2.5) if rng.random() < 0.9 else rng.uniform(0, 24)
        if 0 <= hour < 24:
            return start_ms + day * MS_PER_DAY + int(hour * HOUR_MS)


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
    """Clean office traffic under one agreement, with the given faults injected after ``fault_start_ms``."""
    rng = random.Random(seed)
    plan = Plan(seed, "default", "tax-enforcement-2025")
    times = sorted(office_time_ms(rng, start_ms, days) for _ in range(requests))
    for index, submitted in enumerate(times):
        plan.submit_ms.append(submitted)
        plan.unit_of.append(rng.randrange(len(UNITS)))
        junk = rng.random() < 0.08
        plan.junk_request.append(junk)
        # Clean traffic: junk addresses are never matched; good ones disclose at the given ratio.
        disclosed = not junk and rng.random() < disclosure_ratio
        plan.outcome.append(DISCLOSED if disclosed else NO_MATCH)
        delay = min(int(rng.lognormvariate(0, 1.0) * 2 * HOUR_MS), 48 * HOUR_MS)
        plan.respond_ms.append(submitted + 60_000 + delay)
        if faults and submitted >= fault_start_ms and rng.random() < fault_rate:
            plan.faults[index] = faults[rng.randrange(len(faults))]
    _ensure_each_fault(plan, faults, fault_start_ms, rng)
    for index, fault in plan.faults.items():
        if fault == "response_sla_breach":
            plan.outcome[index] = NO_RESPONSE
        else:
            plan.outcome[index] = DISCLOSED
        plan.junk_request[index] = fault in ("incomplete_request_disclosure", "disposal_overdue")
    return plan


def _ensure_each_fault(plan: Plan, faults: list[str], fault_start_ms: int, rng: random.Random) -> None:
    """Every requested fault occurs at least once, however small the scenario."""
    eligible = [i for i in range(len(plan)) if plan.submit_ms[i] >= fault_start_ms and i not in plan.faults]
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
    return plan
