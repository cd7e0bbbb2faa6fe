"""Grafana dashboards for Disclosure Monitor, generated with Grafana's grafana-foundation-sdk.

    .venv/bin/python dashboards/generate.py          # rewrite dashboards/*.json
    .venv/bin/python dashboards/generate.py --check  # exit 1 if the committed JSON is stale

Every panel queries only the metrics of docs/metrics.md; tests/live/test_observability.py
runs each query against a real Prometheus scraping a real worker. The
dashboards use a ``datasource`` variable (any Prometheus) and show no
personal data: labels are rules, agreements, agencies, units, fields.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
CANARY = 'agreement!="dismon-canary"'  # the canary's probes (dismon canary): on the pipeline dashboard only
AGREEMENT = f'agreement=~"$agreement", {CANARY}'
FIRING = f'status="firing", {AGREEMENT}'


def query(expr: str, legend: str = "", instant: bool = False) -> Dataquery:
    target = Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target


def series(
    title: str, unit: str, *targets: Dataquery, width: int = 12, stacked: bool = False, description: str = ""
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).span(width).height(8).datasource(DATASOURCE)
    panel = panel.description(description) if description else panel
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel.fill_opacity(30).draw_style("bars") if stacked else panel


def single(title: str, expr: str, unit: str = "short", width: int = 6, description: str = "") -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).span(width).height(4).datasource(DATASOURCE)
    panel = panel.description(description) if description else panel
    return panel.with_target(query(expr, instant=True).ref_id("A"))


def base(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["dismon", "disclosure-monitor"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("agreement")
            .label("Agreement")
            .datasource(DATASOURCE)
            .query(f"label_values(dismon_events_total{{{CANARY}}}, agreement)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
    )


def overview() -> Dashboard:
    return (
        base(
            "dismon-overview", "Disclosure Monitor / Overview", "Requests, disclosures and findings across agreements."
        )
        .with_row(Row("Now"))
        .with_panel(
            single("Requests (24 h)", f'sum(increase(dismon_events_total{{type="request", {AGREEMENT}}}[24h]))')
        )
        .with_panel(
            single(
                "Disclosing responses (24 h)", f"sum(increase(dismon_disclosing_responses_total{{{AGREEMENT}}}[24h]))"
            )
        )
        .with_panel(
            single(
                "Critical findings (24 h)",
                f'sum(increase(dismon_findings_total{{severity="critical", status="firing", {AGREEMENT}}}[24h]))',
            )
        )
        .with_panel(
            single(
                "Open improper disclosures",
                "sum(dismon_open_improper_disclosures)",
                description="Improper disclosures whose disposal has not been seen yet (deadline not passed).",
            )
        )
        .with_row(Row("Traffic"))
        .with_panel(
            series(
                "Requests and responses",
                "reqps",
                query(
                    f"sum by (agreement, type) (rate(dismon_events_total{{{AGREEMENT}}}[$__rate_interval]))",
                    "{{agreement}} {{type}}",
                ),
            )
        )
        .with_panel(
            series(
                "Disclosure ratio (1 h)",
                "percentunit",
                query(
                    f"sum by (agreement) (rate(dismon_disclosing_responses_total{{{AGREEMENT}}}[1h]))"
                    f' / sum by (agreement) (rate(dismon_events_total{{type="response", {AGREEMENT}}}[1h]))',
                    "{{agreement}}",
                ),
                description=(
                    "Share of responses that disclosed anything; a jump is what disclosure_ratio_drift detects."
                ),
            )
        )
        .with_panel(
            series(
                "Disclosed fields",
                "short",
                query(f"sum by (field) (increase(dismon_disclosures_total{{{AGREEMENT}}}[$__interval]))", "{{field}}"),
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Findings by rule",
                "short",
                query(
                    f'sum by (rule) (increase(dismon_findings_total{{status="firing", {AGREEMENT}}}[$__interval]))',
                    "{{rule}}",
                ),
                stacked=True,
            )
        )
    )


def incident() -> Dashboard:
    return (
        base(
            "dismon-incident",
            "Disclosure Monitor / Incident",
            "Who is affected and since when: findings by rule, requester unit and agreement.",
        )
        .with_panel(
            series(
                "Findings by rule",
                "short",
                query(
                    f"sum by (rule, severity) (increase(dismon_findings_total{{{FIRING}}}[$__interval]))",
                    "{{rule}} ({{severity}})",
                ),
                stacked=True,
                width=24,
            )
        )
        .with_panel(
            series(
                "Findings by requester unit",
                "short",
                query(
                    f"sum by (requester_unit) (increase(dismon_findings_total{{{FIRING}}}[$__interval]))",
                    "{{requester_unit}}",
                ),
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Disclosing responses by requester agency",
                "reqps",
                query(
                    f"sum by (requester_agency) "
                    f"(rate(dismon_disclosing_responses_total{{{AGREEMENT}}}[$__rate_interval]))",
                    "{{requester_agency}}",
                ),
            )
        )
        .with_panel(
            table.Panel()
            .title("Top agreements by findings (time range)")
            .span(12)
            .height(8)
            .datasource(DATASOURCE)
            .with_target(
                query(
                    "topk(10, sum by (agreement) "
                    f'(increase(dismon_findings_total{{status="firing", {CANARY}}}[$__range])))',
                    instant=True,
                )
                .format("table")
                .ref_id("A")
            )
        )
        .with_panel(
            series(
                "Open improper disclosures awaiting disposal",
                "short",
                query("sum(dismon_open_improper_disclosures)", "open"),
            )
        )
    )


def pipeline() -> Dashboard:
    quantile = "histogram_quantile({q}, sum by (le) (rate({metric}_bucket[$__rate_interval])))"
    return (
        base(
            "dismon-pipeline",
            "Disclosure Monitor / Pipeline health",
            "Is the monitor keeping up? Throughput, lag, dead letters, join state, detection lag.",
        )
        .with_panel(single("Workers up", 'sum(up{job="dismon"})'))
        .with_panel(single("Consumer lag", "sum(dismon_consumer_lag)"))
        .with_panel(single("Watermark lag", "max(dismon_watermark_lag_seconds)", unit="s"))
        .with_panel(single("Alertmanager queue", "sum(dismon_alertmanager_queue)"))
        .with_panel(
            single(
                "Canary: since the last probe came back",
                "time() - max(dismon_canary_last_success_timestamp_seconds)",
                unit="s",
                width=12,
                description="dismon canary's probes through the whole pipeline; DismonDetectionBlind fires after "
                "three intervals without one",
            )
        )
        .with_panel(
            series(
                "Canary probes and round trip",
                "short",
                query("sum by (outcome) (increase(dismon_canary_probes_total[$__rate_interval]))", "{{outcome}}"),
                query(quantile.format(q=0.99, metric="dismon_canary_round_trip_seconds"), "round trip p99 (s)"),
            )
        )
        .with_panel(
            series(
                "Throughput by event type",
                "ops",
                query("sum by (type) (rate(dismon_events_total[$__rate_interval]))", "{{type}}"),
            )
        )
        .with_panel(
            series("Consumer lag by topic", "short", query("sum by (topic) (dismon_consumer_lag)", "{{topic}}"))
        )
        .with_panel(
            series(
                "Dead letters by reason",
                "ops",
                query("sum by (reason) (rate(dismon_invalid_events_total[$__rate_interval]))", "{{reason}}"),
                query("sum(rate(dismon_late_events_total[$__rate_interval]))", "late (still processed)"),
            )
        )
        .with_panel(
            series(
                "Join state",
                "short",
                query("sum(dismon_join_entries)", "request ids held"),
                query("sum(dismon_join_pending_requests)", "unanswered requests"),
                query("sum(dismon_join_pending_orphans)", "disclosures waiting for their request"),
                query("sum(dismon_join_capacity)", "cap (--max-join-entries)"),
                query("sum(rate(dismon_join_refused_total[$__rate_interval]))", "refused (state full)"),
            )
        )
        .with_panel(
            series(
                "Detection lag (event -> alert, wall clock)",
                "s",
                query(quantile.format(q=0.5, metric="dismon_detection_lag_seconds"), "p50"),
                query(quantile.format(q=0.99, metric="dismon_detection_lag_seconds"), "p99"),
            )
        )
        .with_panel(
            series(
                "Join latency (request -> response, event time)",
                "s",
                query(quantile.format(q=0.5, metric="dismon_join_latency_seconds"), "p50"),
                query(quantile.format(q=0.99, metric="dismon_join_latency_seconds"), "p99"),
            )
        )
        .with_panel(
            series(
                "Findings: policy in force vs shadow candidate",
                "short",
                query(
                    f'sum by (rule) (increase(dismon_findings_total{{status="firing", {CANARY}}}[$__interval]))',
                    "live {{rule}}",
                ),
                query(
                    'sum by (rule) (increase(dismon_shadow_findings_total{status="firing"}[$__interval]))',
                    "shadow {{rule}}",
                ),
                description="dismon worker --shadow-policy: what the candidate would raise, never paged; "
                "the shadow series is empty without a candidate",
            )
        )
        .with_panel(
            series(
                "Alertmanager pushes",
                "ops",
                query("sum(rate(dismon_alertmanager_alerts_pushed_total[$__rate_interval]))", "pushed"),
                query("sum(rate(dismon_alertmanager_push_failures_total[$__rate_interval]))", "failed pushes"),
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "dismon-overview.json": overview,
    "dismon-incident.json": incident,
    "dismon-pipeline.json": pipeline,
}


def render(build: Callable[[], Dashboard]) -> str:
    dashboard = build().build()
    for number, panel in enumerate(dashboard.panels or [], start=1):
        panel.id_val = number  # stable ids, so links to a panel survive regeneration
    return JSONEncoder(sort_keys=True, indent=2).encode(dashboard) + "\n"


def panel_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target in a dashboard JSON document."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in document.get("panels", [])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed JSON")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = HERE / name, render(build)
        json.loads(text)  # always valid JSON
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run: python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
