"""``dismon simulate``: realistic synthetic traffic with injected faults, a policy, and the ground truth.

Output directory layout::

    events.jsonl.gz   (or events-p0.jsonl.gz ... with --partitions N: one file per partition)
    policy.toml       the agreements the scenario runs under
    truth.json        what a correct monitor must find: [rule, request_id, event_time_ms] rows,
                      the time to replay until, and for the irs-ice-2025 preset the public timeline
"""

from __future__ import annotations

import gzip
import os
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from monitor.core.timeutil import MS_PER_DAY, format_ms
from monitor.simulate import people
from monitor.simulate.policies import default_policy, irs_ice_policy
from monitor.simulate.scenario import (
    DISCLOSED,
    FAULTS,
    HOUR_MS,
    IMPROPER,
    NO_RESPONSE,
    RUNAWAY_UNIT,
    UNITS,
    WINDOWED_FAULTS,
    Plan,
)

SLA_MS = 72 * HOUR_MS
GRACE_MS = 1 * HOUR_MS
DISPOSAL_DEADLINE_MS = 7 * MS_PER_DAY

# Event codes in the sorted schedule
_REQUEST, _RESPONSE, _DISPOSAL, _SECOND_RESPONSE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Output:
    directory: str
    event_files: tuple[str, ...]
    policy_file: str
    truth_file: str
    events: int
    expected: int


def request_id(plan: Plan, index: int) -> str:
    return f"{plan.scenario}-{index:08d}"


def _render_request(plan: Plan, index: int) -> dict[str, Any]:
    seed, fault = plan.seed, plan.faults.get(index)
    h = people.mix(seed, index, 9)
    subject: dict[str, Any] = {"name": people.name(seed, index), "dob": people.dob(seed, index)}
    subject["address"] = people.junk_address(seed, index) if plan.junk_request[index] else people.address(seed, index)
    legal: dict[str, Any] = {"statute": "8 U.S.C. 1231", "case_id": f"A{h % 10**9:09d}", "removal_order": True}
    if fault == "missing_legal_basis_disclosure":
        legal["case_id"] = "" if h % 2 else None
    event: dict[str, Any] = {
        "type": "request",
        "request_id": request_id(plan, index),
        "agreement_id": "tax-enforcement-2023" if fault == "outside_agreement_period" else plan.agreement_id,
        "requester": {
            "agency": "ICE",
            "unit": UNITS[plan.unit_of[index]],
            "user": f"officer-{h % 400:03d}",
            "signatory": "Field Office Clerk" if fault == "unauthorized_party" else "ICE Director",
        },
        "submitted_at": format_ms(plan.submit_ms[index]),
        "subject": subject,
        "legal_basis": legal,
    }
    batch = plan.batch_of.get(index, plan.batch_id)
    if batch:
        event["batch_id"] = batch
    return event


def _render_response(plan: Plan, index: int, at_ms: int, second: bool = False) -> dict[str, Any]:
    seed, fault = plan.seed, plan.faults.get(index)
    h = people.mix(seed, index, 10)
    event: dict[str, Any] = {
        "type": "response",
        "request_id": request_id(plan, index),
        "agreement_id": "tax-enforcement-2023" if fault == "outside_agreement_period" else plan.agreement_id,
        "responder": {"agency": "IRS", "system": "address-match"},
        "responded_at": format_ms(at_ms),
    }
    if plan.outcome[index] != DISCLOSED:
        event["match"] = {"status": "no_match" if h % 5 else "ambiguous", "score": round((h % 600) / 1000, 3)}
        if h % 3 == 0:
            event["disclosed"] = {}
        return event
    event["match"] = {"status": "matched", "score": 0.9 + (h % 99) / 1000, "matched_on": ["name", "address"]}
    disclosed: dict[str, Any] = {"address": people.address(seed, index + 10**9)}
    if plan.scenario == "default" and h % 10 < 3:
        disclosed["name"] = people.name(seed, index)
    if fault == "weak_match_disclosure":
        event["match"] = {"status": "matched", "score": 0.61, "matched_on": ["name"]}
    elif fault == "unpermitted_field":
        disclosed["income"] = 40_000 + h % 50_000
    elif fault == "restricted_disclosure":
        disclosed["employer"] = "Acme Logistics"
    elif fault == "subject_mismatch":
        disclosed["name"] = people.other_name(seed, index)
    if second:
        event["match"]["score"] = 0.99
    event["disclosed"] = disclosed
    return event


def _render(plan: Plan, code: int, index: int, at_ms: int) -> dict[str, Any]:
    if code == _REQUEST:
        return _render_request(plan, index)
    if code == _DISPOSAL:
        return {
            "type": "disposal",
            "request_id": request_id(plan, index),
            "agreement_id": plan.agreement_id,
            "disposed_at": format_ms(at_ms),
            "confirmed_by": "ICE Records Officer",
        }
    return _render_response(plan, index, at_ms, second=code == _SECOND_RESPONSE)


def _schedule(plan: Plan, disorder_ms: int) -> list[tuple[int, int, int, int]]:
    """(arrival key, event time, code, index) for every event, sorted by arrival: bounded disorder."""
    rng = random.Random(plan.seed ^ 0x5EED)
    jitter = rng.randrange if disorder_ms > 0 else (lambda _n: 0)
    bound = max(disorder_ms, 1)
    items: list[tuple[int, int, int, int]] = []
    for index in range(len(plan)):
        fault = plan.faults.get(index)
        submitted, responded = plan.submit_ms[index], plan.respond_ms[index]
        if fault != "orphan_disclosure":
            items.append((submitted + jitter(bound), submitted, _REQUEST, index))
        if plan.outcome[index] == NO_RESPONSE:
            continue
        items.append((responded + jitter(bound), responded, _RESPONSE, index))
        if fault == "duplicate_disclosure":
            again = responded + HOUR_MS + rng.randrange(5 * HOUR_MS)
            items.append((again + jitter(bound), again, _SECOND_RESPONSE, index))
        if plan.disposals and fault in IMPROPER and fault != "disposal_overdue":
            disposed = responded + HOUR_MS + rng.randrange(5 * MS_PER_DAY)
            items.append((disposed + jitter(bound), disposed, _DISPOSAL, index))
    items.sort()
    return items


def expected_findings(plan: Plan, schedule: list[tuple[int, int, int, int]]) -> list[tuple[str, str, int]]:
    """The ground truth, from the plan: (rule, request_id, event time ms)."""
    second = {index: at for _key, at, code, index in schedule if code == _SECOND_RESPONSE}
    rows = []
    for index, fault in sorted(plan.faults.items()):
        for rule in FAULTS[fault]:
            if rule == "response_sla_breach":
                at = plan.submit_ms[index] + SLA_MS
            elif rule == "disposal_overdue":
                at = plan.respond_ms[index] + DISPOSAL_DEADLINE_MS
            elif rule == "duplicate_disclosure":
                at = second[index]
            elif rule == "unauthorized_party":
                at = plan.submit_ms[index]
            else:
                at = plan.respond_ms[index]
            rows.append((rule, request_id(plan, index), at))
    for fault, key, at in plan.windowed:
        for rule in WINDOWED_FAULTS[fault]:
            rows.append((rule, _windowed_key(plan, rule, key), at))
    return rows


def _windowed_key(plan: Plan, rule: str, key: str) -> str:
    """What a windowed finding is about, as the rule names it in ``details.key``."""
    if rule == "oversized_batch":
        return f"batch:{key}"
    if rule == "daily_cap_exceeded":
        return f"agreement:{plan.agreement_id}"
    if rule == "disclosure_rate_spike" and key.startswith("runaway"):
        return f"unit:{UNITS[RUNAWAY_UNIT]}"
    return key


def _open_partitions(directory: str, partitions: int) -> list[tuple[str, gzip.GzipFile]]:
    names = ["events.jsonl.gz"] if partitions == 1 else [f"events-p{p}.jsonl.gz" for p in range(partitions)]
    return [(os.path.join(directory, n), gzip.open(os.path.join(directory, n), "wb", compresslevel=3)) for n in names]


def iter_events(plan: Plan, disorder_ms: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every event of the plan in arrival order, with its event time."""
    for _key, at_ms, code, index in _schedule(plan, disorder_ms):
        yield at_ms, _render(plan, code, index, at_ms)


def write_scenario(plan: Plan, directory: str, partitions: int = 1, disorder_ms: int = 120_000) -> Output:
    """Write events, policy and ground truth for ``plan`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    schedule = _schedule(plan, disorder_ms)
    files = _open_partitions(directory, partitions)
    dumps = orjson.dumps
    try:
        for _key, at_ms, code, index in schedule:
            line = dumps(_render(plan, code, index, at_ms)) + b"\n"
            target = 0 if partitions == 1 else zlib.crc32(request_id(plan, index).encode()) % partitions
            files[target][1].write(line)
    finally:
        for _name, handle in files:
            handle.close()
    policy_file = os.path.join(directory, "policy.toml")
    first_day = min(plan.submit_ms) // MS_PER_DAY * MS_PER_DAY if len(plan) else 0
    with open(policy_file, "w", encoding="utf-8") as policy_out:
        if plan.scenario == "irs-ice-2025":
            policy_out.write(irs_ice_policy(plan.max_per_day, plan.max_batch))
        else:
            policy_out.write(default_policy(first_day, plan.max_per_day, plan.max_batch))
    rows = expected_findings(plan, schedule)
    last_ms = max((at for _k, at, _c, _i in schedule), default=0)
    truth: dict[str, Any] = {
        "scenario": plan.scenario,
        "seed": plan.seed,
        "requests": len(plan),
        "events": len(schedule),
        "faults": sorted(set(plan.faults.values()) | {fault for fault, _key, _at in plan.windowed}),
        "until": format_ms(last_ms + max(SLA_MS, GRACE_MS, DISPOSAL_DEADLINE_MS) + 60_000),
        "expected": rows,
    }
    if plan.scenario == "irs-ice-2025":
        truth["public_record"] = {
            "names_checked": 1_280_000,
            "answered_with_address": 47_289,
            "violations_per_court": 42_695,
            "disclosed_on": "2025-08-07",
            "reported_to_recipient": "2026-01",
            "declared_in_court": "2026-02-11",
        }
    truth_file = os.path.join(directory, "truth.json")
    with open(truth_file, "wb") as truth_out:
        truth_out.write(orjson.dumps(truth))
    return Output(directory, tuple(n for n, _ in files), policy_file, truth_file, len(schedule), len(rows))
