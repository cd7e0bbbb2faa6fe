"""``dismon incident``: a draft incident report (Markdown and JSON) for one incident, from its alerts.

IRS Publication 1075 asks recipients of tax data to report a possible unauthorised disclosure within 24 hours
with when it happened and was found, how it was found, the data elements, the number of records and the
systems involved, and no tax data in the report itself. The draft fills in what the monitor knows from the
alerts (which carry no personal data) and leaves marked blanks for what only people know.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from monitor.core.timeutil import format_ms, parse_time_ms
from monitor.outputs.alert_lines import about_a_disclosure

BLANK = "[TO BE COMPLETED: {what}]"
#: What only people know: (key, what to write).
BLANKS = (
    ("systems_involved", "the systems that sent and received the data, beyond the agreement named here"),
    ("containment", "what was done to stop further disclosures, and when"),
    ("recovery", "whether the recipient returned or destroyed the data, with its confirmation"),
    ("notified", "who was notified (TIGTA, the IRS Office of Safeguards) and when"),
    ("reporter", "name, role and contact of the person filing this report"),
)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which alerts make the incident: these alert ids, or one agreement within a time range of event time."""

    alert_ids: frozenset[str] = frozenset()
    agreement: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None

    def __contains__(self, alert: Mapping[str, Any]) -> bool:
        if self.alert_ids:
            return alert["alert_id"] in self.alert_ids
        at = parse_time_ms(alert["event_time"])
        return (
            alert.get("agreement_id") == self.agreement
            and (self.from_ms is None or at >= self.from_ms)
            and (self.to_ms is None or at < self.to_ms)
        )

    def describe(self) -> str:
        if self.alert_ids:
            return f"{len(self.alert_ids)} alert id(s)"
        span = " .. ".join(part or "open" for part in (_iso(self.from_ms), _iso(self.to_ms)))
        return f"agreement {self.agreement}, event time {span}"


def build(alerts: Iterable[Mapping[str, Any]], selection: Selection) -> dict[str, Any]:
    """The incident's facts: counts and times from the selected firing alerts."""
    chosen = [a for a in alerts if a.get("status", "firing") == "firing" and a in selection]
    about = [a for a in chosen if about_a_disclosure(a)] or chosen
    times = sorted(parse_time_ms(a["event_time"]) for a in about)
    detected = min(chosen, key=lambda a: a["detected_at"], default=None)
    overdue = {a["request_id"] for a in chosen if a["rule"] == "disposal_overdue"}
    records = {a["request_id"] for a in about if a.get("request_id")}
    return {
        "selection": selection.describe(),
        "alerts": len(chosen),
        "first_disclosure": _iso(times[0]) if times else None,
        "last_disclosure": _iso(times[-1]) if times else None,
        "detected_at": detected["detected_at"] if detected else None,
        "how_found": (
            f"Disclosure Monitor raised {detected['rule']} (alert {detected['alert_id']}): {detected['summary']}"
            if detected
            else None
        ),
        "rules": dict(Counter(a["rule"] for a in chosen).most_common()),
        "data_elements": sorted({f for a in about for f in (a.get("details") or {}).get("disclosed_fields", [])}),
        "records": len(records),
        "distinct_subjects": len({a["subject_ref"] for a in about if a.get("subject_ref")}),
        "agreements": sorted({a["agreement_id"] for a in chosen}),
        "requester_units": dict(Counter((a.get("requester") or {}).get("unit") or "(unknown)" for a in about)),
        "disposal": {
            "improper_records": len(records),
            "disposal_overdue": len(overdue & records) if records else len(overdue),
        },
        "alert_ids": sorted(a["alert_id"] for a in chosen),
        **{key: BLANK.format(what=what) for key, what in BLANKS},
    }


def to_json(report: Mapping[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2)


def to_markdown(report: Mapping[str, Any]) -> str:
    units = ", ".join(f"{unit} ({n:,})" for unit, n in report["requester_units"].items()) or "none"
    rules = ", ".join(f"{rule} ({n:,})" for rule, n in report["rules"].items()) or "none"
    disposal = report["disposal"]
    lines = [
        "# Possible unauthorised disclosure: draft incident report",
        "",
        "Draft made by `dismon incident` from the monitor's alerts. It holds no tax data and no personal data:",
        "request ids and keyed subject references only. Complete every marked blank before sending.",
        "",
        f"- **Incident**: {report['selection']}, {report['alerts']:,} alert(s)",
        f"- **When it happened**: first disclosure {report['first_disclosure']}, "
        f"last {report['last_disclosure']} (UTC)",
        f"- **When it was found**: {report['detected_at']} (UTC, when the monitor raised its first alert)",
        f"- **How it was found**: {report['how_found']}",
        f"- **Rules**: {rules}",
        f"- **Data elements disclosed**: {', '.join(report['data_elements']) or 'none recorded'}",
        f"- **Records**: {report['records']:,} disclosures, {report['distinct_subjects']:,} distinct subjects",
        f"- **Agreements**: {', '.join(report['agreements'])}",
        f"- **Recipients (requester units)**: {units}",
        f"- **Disposal**: {disposal['disposal_overdue']:,} of {disposal['improper_records']:,} improper records "
        "overdue for disposal so far",
    ]
    lines += [f"- **{key.replace('_', ' ').capitalize()}**: {report[key]}" for key, _ in BLANKS]
    lines += ["", "## Alert ids", "", *(f"- `{alert_id}`" for alert_id in report["alert_ids"][:200])]
    if len(report["alert_ids"]) > 200:
        lines.append(f"- ... and {len(report['alert_ids']) - 200:,} more (all in the JSON report)")
    return "\n".join(lines) + "\n"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)
