"""``dismon worker --shadow-policy``: a candidate policy judges the same stream on the real broker. Its findings
are a replay's under the candidate, on their own topic and metric; the live findings stay a replay's under the
policy in force; SIGHUP reloads the candidate too. (tests/live/test_observability.py shows that shadow
findings never reach Alertmanager.)"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest

from tests.live.conftest import (
    BASE,
    NO_EMPLOYER,
    STARTED,
    Worker,
    consume_all,
    create_topics,
    produce,
    publish,
    reloads_between_pairs,
    replay_ids,
    tight_daily_cap,
    topics_and_expected,
)
from tests.services import metric_sum


def test_shadow_findings_are_a_replay_under_the_candidate_and_stay_apart(
    kafka_bootstrap: str, scenario: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, prefix = scenario
    ticks, live_expected = topics_and_expected(kafka_bootstrap, directory, prefix, capsys)
    candidate = directory / "candidate"
    candidate.mkdir()
    shutil.copy(directory / "policy.toml", candidate / "policy.toml")
    tight_daily_cap(candidate)  # the candidate caps disclosures per day: findings the policy in force has not
    shadow_expected = replay_ids(directory, ticks, capsys, candidate / "policy.toml")
    assert shadow_expected - live_expected, "the candidate must change the findings, or this proves nothing"

    worker = Worker(
        kafka_bootstrap,
        prefix,
        directory / "policy.toml",
        directory / "worker.log",
        extra=("--shadow-policy", str(candidate / "policy.toml")),
    )
    try:
        published = publish(directory, kafka_bootstrap, prefix, capsys)
        asyncio.run(produce(kafka_bootstrap, ticks))
        worker.wait_caught_up(published + len(ticks))
        metrics = worker.metrics()
    finally:
        assert worker.stop() == 0
        STARTED.clear()
    live = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts"))
    shadow = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.shadow-alerts"))
    assert {a["alert_id"] for _, a in live} == live_expected
    assert {a["alert_id"] for _, a in shadow} == shadow_expected
    # Counted apart: the live metric counts the live topic's findings, the shadow metric the shadow topic's.
    assert metric_sum(metrics, "dismon_findings_total{", 'status="firing"') == sum(
        a["status"] == "firing" for _, a in live
    )
    assert metric_sum(metrics, "dismon_shadow_findings_total{", 'status="firing"') == sum(
        a["status"] == "firing" for _, a in shadow
    )
    assert metric_sum(metrics, "dismon_shadow_findings_total{", 'rule="daily_cap_exceeded"') > 0
    assert metric_sum(metrics, "dismon_findings_total{", 'rule="daily_cap_exceeded"') == 0


def test_sighup_reloads_the_shadow_policy_and_refuses_a_broken_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    policy, candidate = tmp_path / "policy.toml", tmp_path / "candidate.toml"
    policy.write_text(BASE)
    candidate.write_text(NO_EMPLOYER)
    log = tmp_path / "worker.log"
    worker = Worker(kafka_bootstrap, prefix, policy, log, extra=("--shadow-policy", str(candidate)))

    try:
        reloads_between_pairs(kafka_bootstrap, prefix, worker, candidate, log, BASE,
                              NO_EMPLOYER + "\n[[agreement]]\nid = 7\n", "shadow policy")  # fmt: skip
    finally:
        assert worker.stop() == 0
        STARTED.clear()

    def unpermitted(topic: str) -> set[str]:
        alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.{topic}", quiet_ms=1500))
        return {a["request_id"] for _, a in alerts if a["rule"] == "unpermitted_field"}

    # The candidate forbade the employer until the reload; the policy in force always permitted it.
    assert unpermitted("shadow-alerts") == {"under-a"}
    assert unpermitted("alerts") == set()
    lines = log.read_text().splitlines()
    assert any("policy reloaded from" in line and "shadow policy" not in line for line in lines)  # both reloaded
