"""dismon report and dismon incident from a replay: the HTML report rendered in headless Chromium (no console
errors, no network request, every chart and table with the replay's totals, a screenshot), the incident's
counts equal to its alerts, and no personal data in any of it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import sync_playwright

from monitor.cli import main
from tests.pii import leaks, personal_values
from tests.services import tool

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def _replayed(directory: Path, *simulate: str) -> Path:
    assert main(["simulate", "--out", str(directory), *simulate]) == 0
    code = main(["replay", "--policy", str(directory / "policy.toml"), "--alerts-out", str(directory / "alerts.jsonl"),
                 "--summary-out", str(directory / "summary.json"), "--ground-truth", str(directory / "truth.json"),
                 str(directory / "events.jsonl.gz")])  # fmt: skip
    assert code in (0, 1)
    assert main(["report", "--alerts", str(directory / "alerts.jsonl"), "--summary", str(directory / "summary.json"),
                 "--truth", str(directory / "truth.json"), "--out", str(directory / "report.html")]) == 0  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every rule's faults, the windowed ones included."""
    return _replayed(tmp_path_factory.mktemp("report"), "--requests", "4000", "--fault", "all", "--fault",
                     "all-windowed", "--fault-rate", "0.03", "--seed", "3")  # fmt: skip


@pytest.fixture(scope="module")
def irs_ice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real case at a fifth of the demo's size: a runaway batch in June, the leak on 7 August."""
    return _replayed(tmp_path_factory.mktemp("irs-ice"), "--scenario", "irs-ice-2025", "--requests", "20000")


def _alerts(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (directory / "alerts.jsonl").read_bytes().splitlines()]


@pytest.mark.parametrize("name", ["replayed", "irs_ice"])
def test_the_report_renders_offline_with_every_chart_and_the_replays_totals(
    name: str, request: pytest.FixtureRequest
) -> None:
    replayed: Path = request.getfixturevalue(name)
    alerts, summary = _alerts(replayed), orjson.loads((replayed / "summary.json").read_bytes())
    firing = [a for a in alerts if a["status"] == "firing"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=tool("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        console: list[str] = []
        requests: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.on("request", lambda request: requests.append(request.url))
        url = (replayed / "report.html").as_uri()
        page.goto(url)
        assert console == [] and requests == [url]  # nothing but the file itself
        for chart in ("timeline-chart", "findings-chart"):
            assert page.locator(f"#{chart} svg").count() == 1 and page.locator(f"#{chart} svg text").count() > 5
        for table in (
            "totals",
            "days",
            "findings-table",
            "units",
            "batches",
            "windowed",
            "disposal-table",
            "truth-table",
        ):
            assert page.locator(f"table#{table} tr").count() >= 2, table
        # Totals: every firing alert, by rule; every disclosing response of the summary, by day.
        assert int(page.locator("#findings-table").get_attribute("data-total") or -1) == len(firing)
        rows = page.locator("#findings-table tr").all_inner_texts()
        by_rule = Counter(a["rule"] for a in firing)
        shown = {r.split("\t")[0]: int(r.split("\t")[2].replace(",", "")) for r in rows[1:-1]}
        assert shown == dict(by_rule)
        days = [r.split("\t") for r in page.locator("#days tr").all_inner_texts()[1:]]
        assert sum(int(d[1].replace(",", "")) for d in days) == sum(t for _, t, _ in summary["disclosures_by_day"]) > 0
        windowed = page.locator("#windowed tr").all_inner_texts()[1:]
        assert len(windowed) == sum(1 for a in alerts if a["request_id"] is None)
        if name == "irs_ice":  # at a glance: the June batch flagged weeks ahead, the 7 August burst
            headline = page.locator("#headline").inner_text()
            assert "oversized_batch on 2025-06" in headline and "days before" in headline
            assert "in one day" in headline and "on 2025-08-07" in headline
        page.screenshot(path=str(replayed / "report.png"), full_page=True)
        page.emulate_media(media="print")
        assert page.pdf(format="A4")[:4] == b"%PDF"
        browser.close()
    assert (replayed / "report.png").stat().st_size > 20_000


def test_an_incidents_counts_equal_its_alerts_and_nothing_personal_leaves(replayed: Path) -> None:
    alerts = _alerts(replayed)
    critical = [a for a in alerts if a["rule"] == "incomplete_request_disclosure"]
    agreement = critical[0]["agreement_id"]
    out = replayed / "incident"
    assert main(["incident", "--alerts", str(replayed / "alerts.jsonl"), "--agreement", agreement,
                 "--out", str(out)]) == 0  # fmt: skip
    report = orjson.loads(out.with_suffix(".json").read_bytes())
    chosen = [a for a in alerts if a["agreement_id"] == agreement and a["status"] == "firing"]
    assert report["alerts"] == len(chosen) and sorted(report["alert_ids"]) == sorted(a["alert_id"] for a in chosen)
    assert report["rules"] == dict(Counter(a["rule"] for a in chosen))
    not_disclosures = {"response_sla_breach", "disposal_overdue", "oversized_batch", "daily_cap_exceeded",
                       "disclosure_rate_spike", "disclosure_ratio_drift"}  # fmt: skip
    disclosed = {
        a["request_id"]
        for a in chosen
        if a["rule"] not in not_disclosures and a["details"].get("problem") not in ("signatory_not_authorized",)
    }
    assert report["records"] == len(disclosed) > 0
    assert report["first_disclosure"] <= report["last_disclosure"]
    assert "address" in report["data_elements"]
    markdown = out.with_suffix(".md").read_text()
    assert markdown.count("[TO BE COMPLETED") == 5 and f"{report['records']:,} disclosures" in markdown
    # By alert ids: exactly those.
    ids = [a["alert_id"] for a in critical[:3]]
    assert main(["incident", "--alerts", str(replayed / "alerts.jsonl"), *[x for i in ids for x in ("--alert-id", i)],
                 "--out", str(replayed / "three")]) == 0  # fmt: skip
    three = orjson.loads((replayed / "three.json").read_bytes())
    assert three["alerts"] == 3 and three["records"] == len({a["request_id"] for a in critical[:3]})
    # The PII scan covers the report and both incident outputs.
    people = personal_values(replayed / "events.jsonl.gz")
    assert len(people) > 100
    for path in ("report.html", "incident.md", "incident.json", "three.md"):
        assert leaks((replayed / path).read_text(), people) == [], path


def test_the_irs_ice_report_holds_no_personal_data(irs_ice: Path) -> None:
    people = personal_values(irs_ice / "events.jsonl.gz")
    text = (irs_ice / "report.html").read_text()
    assert len(people) > 100 and leaks(text, people) == []
    someone = sorted(people)[0]
    assert leaks(f"{text}<td>{someone}</td>", people) == [someone]  # the scan would see one
