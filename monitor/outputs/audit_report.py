"""``dismon report``: one self-contained HTML file from a replay's alerts (and its JSON summary, and a
simulator's ground truth when given).

Everything in it comes from alerts and counts, and alerts carry no personal data (request ids, agreement
ids, units and keyed subject hashes only). Charts are drawn here with matplotlib and inlined as SVG; the
page loads nothing, runs no script, and prints on A4 or Letter.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: drawn to SVG
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from monitor.core.timeutil import parse_time_ms
from monitor.outputs.alert_lines import WINDOWED, about_a_disclosure

PROPER_COLOR, PALETTE = "#b8c4d6", ("#c0392b", "#e67e22", "#8e44ad", "#16a085", "#2c3e50", "#d35400", "#7f8c8d")
plt.rcParams.update(
    {"svg.fonttype": "none", "font.size": 9, "font.family": "sans-serif", "date.epoch": "1970-01-01T00:00:00"}
)
_EPOCH = dt.date(1970, 1, 1)


@dataclass
class Audit:
    """What the report shows, computed from the alerts (firing and resolved) and the summary."""

    alerts: list[dict[str, Any]]
    summary: Mapping[str, Any] | None = None
    truth: Mapping[str, Any] | None = None
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, severity) -> firing
    resolved: Counter[str] = field(default_factory=Counter)
    improper_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # day -> rule -> n
    improper_ids: set[str] = field(default_factory=set)
    units: Counter[str] = field(default_factory=Counter)  # requester unit -> request ids with findings
    overdue: set[str] = field(default_factory=set)  # request ids with disposal_overdue

    def __post_init__(self) -> None:
        first_rule: dict[str, tuple[int, str]] = {}  # request id -> (event time, rule) of its first critical
        unit_of: dict[str, str] = {}
        for alert in self.alerts:
            rule, request_id = alert["rule"], alert.get("request_id")
            if alert.get("status") == "resolved":
                self.resolved[rule] += 1
                continue
            self.by_rule[(rule, alert["severity"])] += 1
            if request_id is None:
                continue
            unit_of.setdefault(request_id, (alert.get("requester") or {}).get("unit") or "(unknown)")
            if rule == "disposal_overdue":
                self.overdue.add(request_id)
            elif alert["severity"] == "critical" and about_a_disclosure(alert):
                at = parse_time_ms(alert["event_time"])
                if request_id not in first_rule or at < first_rule[request_id][0]:
                    first_rule[request_id] = (at, rule)
        for at, rule in first_rule.values():
            self.improper_day[_day(at)][rule] += 1
        self.improper_ids = set(first_rule)
        self.units = Counter(unit_of.values())

    @cached_property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a.get("status") != "resolved"]

    @cached_property
    def disclosures_by_day(self) -> dict[str, tuple[int, int]]:
        if self.summary is None:
            return {}
        return {day: (total, improper) for day, total, improper in self.summary.get("disclosures_by_day", [])}

    @cached_property
    def first_alert(self) -> dict[str, Any] | None:
        return min(self.firing, key=lambda a: parse_time_ms(a["event_time"]), default=None)

    def first_improper_ms(self) -> int | None:
        times = [
            parse_time_ms(a["event_time"])
            for a in self.firing
            if a.get("request_id") in self.improper_ids and a["rule"] != "disposal_overdue"
        ]
        return min(times, default=None)


def render(audit: Audit, title: str, generated: str) -> str:
    """The report as one HTML document."""
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(generated)} by dismon report. Built from alerts and counts only: no '
        "names, addresses, dates of birth or tax ids.</p>",
        _headline(audit),
        _totals(audit),
        _section("timeline", "Disclosures per day", _timeline_svg(audit), _timeline_note(audit)),
        _section("findings", "Findings by rule and severity", _findings_svg(audit), _findings_table(audit)),
        _section("requesters", "Requester units and batches", "", _units_table(audit) + _batches_table(audit)),
        _section("windowed", "Windowed findings: observed against baseline or cap", "", _windowed_table(audit)),
        _section("disposal", "Disposal of improper disclosures", "", _disposal_table(audit)),
    ]
    if audit.truth is not None:
        body.append(_section("truth", "Detection against the ground truth", "", _truth_table(audit)))
    return _PAGE.format(title=_e(title), body="\n".join(body))


# -- sections ---------------------------------------------------------------------------------------


def _headline(audit: Audit) -> str:
    first, improper_ms = audit.first_alert, audit.first_improper_ms()
    items = []
    if first is not None:
        items.append(
            f"First alert: <b>{_e(first['rule'])}</b> on {_e(first['event_time'][:10])} ({_e(first['summary'])})."
        )
    if first is not None and improper_ms is not None:
        ahead = (improper_ms - parse_time_ms(first["event_time"])) / 86_400_000
        if ahead >= 1:
            items.append(
                f"That was <b>{ahead:.0f} days before</b> the first improper disclosure, on {_day(improper_ms)}."
            )
    busiest = max(audit.improper_day.items(), key=lambda item: sum(item[1].values()), default=None)
    if busiest is not None:
        items.append(f"Most improper disclosures in one day: <b>{sum(busiest[1].values()):,}</b> on {_e(busiest[0])}.")
    return '<div class="headline" id="headline">' + " ".join(items or ["No findings."]) + "</div>"


def _totals(audit: Audit) -> str:
    rows: list[tuple[str, str]] = []
    summary = audit.summary
    if summary is not None:
        events = summary.get("events", {})
        rows += [
            ("Events", f"{sum(events.values()):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(events.items()))})"),
            ("Event time", f"{summary.get('first_event') or '-'} .. {summary.get('last_event') or '-'}"),
            ("Invalid events (dead-lettered)", f"{sum(summary.get('invalid', {}).values()):,}"),
            ("Disclosing responses", f"{sum(t for t, _ in audit.disclosures_by_day.values()):,}"),
        ]
    rows += [
        ("Improper disclosures (request ids with a critical finding)", f"{len(audit.improper_ids):,}"),
        ("Alerts firing", f"{len(audit.firing):,}"),
        ("Alerts resolved", f"{sum(audit.resolved.values()):,}"),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="totals" id="totals">{cells}</table>'


def _timeline_svg(audit: Audit) -> str:
    days = sorted(set(audit.disclosures_by_day) | set(audit.improper_day))
    first = audit.first_alert
    if first is not None:
        days = sorted(set(days) | {first["event_time"][:10]})
    if audit.summary and audit.summary.get("first_event"):
        days = sorted(set(days) | {audit.summary["first_event"][:10], (audit.summary.get("last_event") or "")[:10]})
    days = [d for d in days if d]
    if not days:
        return "<p>No disclosures.</p>"
    dates = [dt.date.fromisoformat(d) for d in days]
    start, end = min(dates), max(dates)
    axis = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    x = [_day_number(day) for day in axis]
    totals = audit.disclosures_by_day
    rules = sorted({rule for counts in audit.improper_day.values() for rule in counts})
    figure, ax = plt.subplots(figsize=(9.5, 3.2))
    bottom = [0.0] * len(axis)
    for index, rule in enumerate(rules):
        heights = [float(audit.improper_day.get(day.isoformat(), Counter())[rule]) for day in axis]
        ax.bar(x, heights, bottom=bottom, width=0.8, color=PALETTE[index % len(PALETTE)], label=f"improper: {rule}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if totals:
        proper = [max(0.0, totals.get(day.isoformat(), (0, 0))[0] - b) for day, b in zip(axis, bottom, strict=True)]
        ax.bar(x, proper, bottom=bottom, width=0.8, color=PROPER_COLOR, label="proper")
    for alert in audit.firing:
        if alert["rule"] == "daily_cap_exceeded" and "cap" in (alert.get("details") or {}):
            ax.axhline(alert["details"]["cap"], color="#555", linestyle="--", linewidth=0.8)
            ax.annotate(f"daily cap {alert['details']['cap']:,}", (x[0], alert["details"]["cap"]), fontsize=8,
                        xytext=(2, 2), textcoords="offset points")  # fmt: skip
            break
    if first is not None:
        when = _day_number(dt.date.fromisoformat(first["event_time"][:10]))
        ax.axvline(when, color="#c0392b", linewidth=1.2)
        ax.annotate(f"first alert: {first['rule']}", (when, 0), xytext=(4, 60), textcoords="offset points",
                    color="#c0392b", fontsize=8)  # fmt: skip
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    ax.set_ylabel("disclosures")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    figure.autofmt_xdate()
    return _svg(figure, "timeline-chart")


def _timeline_note(audit: Audit) -> str:
    if audit.summary is None:
        return "<p>Proper disclosures need the replay's summary (<code>dismon replay --summary-out</code>).</p>"
    rows = "".join(
        f"<tr><td>{_e(day)}</td><td>{total:,}</td><td>{improper:,}</td></tr>"
        for day, (total, improper) in sorted(audit.disclosures_by_day.items())
    )
    return f'<table id="days"><tr><th>Day</th><th>Disclosures</th><th>Improper</th></tr>{rows}</table>'


def _findings_svg(audit: Audit) -> str:
    if not audit.by_rule:
        return ""
    items = sorted(audit.by_rule.items(), key=lambda item: item[1])
    figure, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 0.8))
    colors = ["#c0392b" if severity == "critical" else "#e67e22" for (_, severity), _ in items]
    ax.barh([f"{rule} ({severity})" for (rule, severity), _ in items], [n for _, n in items], color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("findings (log scale)")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(figure, "findings-chart")


def _findings_table(audit: Audit) -> str:
    rows = "".join(
        f'<tr><td>{_e(rule)}</td><td class="{_e(severity)}">{_e(severity)}</td><td>{n:,}</td>'
        f"<td>{audit.resolved.get(rule, 0):,}</td></tr>"
        for (rule, severity), n in sorted(audit.by_rule.items(), key=lambda item: -item[1])
    )
    total = sum(audit.by_rule.values())
    return (
        f'<table id="findings-table" data-total="{total}"><tr><th>Rule</th><th>Severity</th><th>Firing</th>'
        f"<th>Resolved</th></tr>{rows}<tr><th>Total</th><th></th><th>{total:,}</th>"
        f"<th>{sum(audit.resolved.values()):,}</th></tr></table>"
    )


def _units_table(audit: Audit) -> str:
    rows = "".join(f"<tr><td>{_e(unit)}</td><td>{n:,}</td></tr>" for unit, n in audit.units.most_common(10))
    return (
        '<table id="units"><tr><th>Requester unit (top 10)</th><th>Request ids with findings</th></tr>'
        f"{rows or '<tr><td colspan=2>none</td></tr>'}</table>"
    )


def _batches_table(audit: Audit) -> str:
    rows = "".join(
        f"<tr><td>{_e(str(a['details'].get('key', '')).removeprefix('batch:'))}</td><td>{_e(a['agreement_id'])}</td>"
        f"<td>{a['details'].get('observed', '')}</td><td>{a['details'].get('cap', '')}</td>"
        f"<td>{_e(a['event_time'])}</td></tr>"
        for a in audit.firing
        if a["rule"] == "oversized_batch"
    )
    return (
        '<table id="batches"><tr><th>Batch</th><th>Agreement</th><th>Requests</th><th>Limit</th>'
        f"<th>Flagged at</th></tr>{rows or '<tr><td colspan=5>no oversized batch</td></tr>'}</table>"
    )


def _windowed_table(audit: Audit) -> str:
    rows = []
    for alert in sorted(audit.alerts, key=lambda a: (a["event_time"], a.get("status") == "resolved")):
        if alert["rule"] not in WINDOWED or alert.get("request_id") is not None:
            continue
        details = alert.get("details") or {}
        reference = details.get("cap", details.get("baseline", details.get("expected", "")))
        rows.append(
            f"<tr><td>{_e(alert['rule'])}</td><td>{_e(alert['agreement_id'])}</td>"
            f"<td>{_e(str(details.get('key', '')))}</td><td>{_e(alert['event_time'])}</td>"
            f"<td>{_e(alert.get('status', 'firing'))}</td><td>{_e(_number(details.get('observed', '')))}</td>"
            f"<td>{_e(_number(reference))}</td></tr>"
        )
    return (
        '<table id="windowed"><tr><th>Rule</th><th>Agreement</th><th>Key</th><th>Event time</th><th>Status</th>'
        f"<th>Observed</th><th>Baseline or cap</th></tr>{''.join(rows) or '<tr><td colspan=7>none</td></tr>'}</table>"
    )


def _disposal_table(audit: Audit) -> str:
    open_end = (audit.summary or {}).get("state_at_end", {}).get("open_improper")
    rows = [
        ("Improper disclosures", f"{len(audit.improper_ids):,}"),
        ("Disposal overdue (disposal_overdue findings)", f"{len(audit.overdue):,}"),
    ]
    if open_end is not None:
        rows.append(("Still within their disposal deadline at the end of the log", f"{open_end:,}"))
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table id="disposal-table">{cells}</table>'


def _truth_table(audit: Audit) -> str:
    truth = audit.truth or {}
    expected: dict[str, list[int]] = defaultdict(list)
    for rule, _request_id, at in truth.get("expected", []):
        expected[rule].append(at if isinstance(at, int) else parse_time_ms(at))
    found: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for alert in audit.firing:
        counts[alert["rule"]] += 1
        at = parse_time_ms(alert["event_time"])
        found[alert["rule"]] = min(found.get(alert["rule"], at), at)
    rows = []
    for rule in sorted(expected):
        first_true, first_found = min(expected[rule]), found.get(rule)
        lead = "" if first_found is None else _duration(first_found - first_true)
        rows.append(
            f"<tr><td>{_e(rule)}</td><td>{len(expected[rule]):,}</td><td>{counts.get(rule, 0):,}</td>"
            f"<td>{_e(_iso(first_true))}</td><td>{_e(_iso(first_found) if first_found else 'never')}</td>"
            f"<td>{lead}</td></tr>"
        )
    record = truth.get("public_record")
    note = ""
    if record:
        note = (
            f"<p>In reality: {record['violations_per_court']:,} violations went out on {_e(record['disclosed_on'])}, "
            f"were reported to the recipient in {_e(record['reported_to_recipient'])} and declared in court on "
            f"{_e(record['declared_in_court'])}.</p>"
        )
    return (
        '<table id="truth-table"><tr><th>Rule</th><th>Expected</th><th>Found</th><th>First in reality</th>'
        f"<th>First detected</th><th>Detection delay</th></tr>{''.join(rows)}</table>{note}"
    )


# -- helpers ----------------------------------------------------------------------------------------


def _section(anchor: str, title: str, chart: str, table: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{chart}{table}</section>'


def _svg(figure: Any, ident: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    return f'<figure class="chart" id="{ident}">{svg}</figure>'


def _day_number(day: dt.date) -> float:
    """A date as matplotlib plots it: days since its epoch (set above)."""
    return float((day - _EPOCH).days)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if abs(seconds) >= 86_400:
        return f"{seconds / 86_400:,.1f} days"
    if abs(seconds) >= 3_600:
        return f"{seconds / 3_600:,.1f} h"
    return f"{seconds:,.0f} s"


def _number(value: Any) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)


def _e(text: Any) -> str:
    return html.escape(str(text))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 60em;
  color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ccc; }}
.meta {{ color: #666; margin-top: 0; }}
.headline {{ background: #fdf2f0; border-left: 4px solid #c0392b; padding: 0.6em 1em; margin: 1em 0; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; }}
th, td {{ border-bottom: 1px solid #e3e3e3; padding: 0.25em 0.8em 0.25em 0; text-align: left;
  vertical-align: top; }}
td {{ font-variant-numeric: tabular-nums; }} .critical {{ color: #c0392b; }} .warning {{ color: #b9770e; }}
figure.chart {{ margin: 0.5em 0; }} figure.chart svg {{ max-width: 100%; height: auto; }}
@media print {{ body {{ margin: 0; max-width: none; font-size: 11px; }} section {{ break-inside: avoid; }}
  .headline {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; }} }}
</style></head>
<body>
{body}
</body></html>
"""
