"""The policies the simulated scenarios run under (written next to the events as ``policy.toml``)."""

from __future__ import annotations

import datetime as dt

_REQUIRED = """required_request_fields = ["subject.name.last", "subject.address.street", "subject.address.city",
  "subject.address.state", "subject.address.zip", "legal_basis.statute", "legal_basis.case_id"]"""


def _caps(max_per_day: int | None, max_batch: int | None) -> str:
    lines = []
    if max_per_day is not None:
        lines.append(f"max_disclosures_per_day = {max_per_day}")
    if max_batch is not None:
        lines.append(f"max_batch_size = {max_batch}")
    return "\n".join(lines)


def _agreement(agreement_id: str, effective: str, permitted: str, extra: str = "") -> str:
    return f"""
[[agreement]]
id = "{agreement_id}"
requesters = ["ICE"]
disclosers = ["IRS"]
{effective}
permitted_fields = [{permitted}]
{_REQUIRED}
required_match = {{ status = "matched", min_score = 0.9, on = ["name", "address"] }}
response_sla = "72h"
join_window = "14d"
orphan_grace = "1h"
disposal_deadline = "7d"
authorized_signatories = ["ICE Director", "ICE Deputy Director"]
{extra}"""


def default_policy(start_day_ms: int, max_per_day: int | None = None, max_batch: int | None = None) -> str:
    """One agreement in force from the scenario's first day (with a court order on employer data),
    and an expired one that some faulty requests still cite."""
    start = dt.datetime.fromtimestamp(start_day_ms / 1000, tz=dt.UTC).date().isoformat()
    current = _agreement(
        "tax-enforcement-2025",
        f"effective_from = {start}",
        '"address", "name", "employer"',
        f"""{_caps(max_per_day, max_batch)}
rate_spike = {{}}   # defaults: 2h windows every 15m, >= 10 disclosures, >= 4x baseline, p < 1e-7
ratio_drift = {{}}  # defaults: 1h windows, CUSUM for a doubling of the disclosure share

[[agreement.restriction]]
fields = ["employer"]
from = {start}
reason = "court order: no employer disclosure"
""",
    )
    expired = _agreement(
        "tax-enforcement-2023", "effective_from = 2023-01-01\neffective_until = 2024-12-31", '"address", "name"'
    )
    return "# Simulated agreements (dismon simulate, default scenario)" + current + expired


def irs_ice_policy(max_per_day: int | None = None, max_batch: int | None = None) -> str:
    """The IRS-ICE memorandum as publicly described: addresses only, full address and case required."""
    return f"""# irs-ice-2025: the IRS-ICE data-sharing agreement of April 2025, as publicly described
[[agreement]]
id = "irs-ice-2025"
requesters = ["ICE"]
disclosers = ["IRS"]
effective_from = 2025-04-07
permitted_fields = ["address"]
{_REQUIRED}
required_match = {{ status = "matched", min_score = 0.9, on = ["name", "address"] }}
# The batch was answered two months after it was sent: no SLA, and state kept long enough to join.
join_window = "120d"
orphan_grace = "1h"
authorized_signatories = ["ICE Director"]
{_caps(max_per_day, max_batch)}
rate_spike = {{}}   # defaults: 2h windows every 15m, >= 10 disclosures, >= 4x baseline, p < 1e-7
ratio_drift = {{}}  # defaults: 1h windows, CUSUM for a doubling of the disclosure share
"""
