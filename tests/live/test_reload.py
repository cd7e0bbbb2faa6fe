"""Policy reload: the core judges by the new policy from then on; the worker reloads on SIGHUP and refuses a
broken file, keeping the policy in force."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from monitor.core.detector import Detector
from monitor.core.findings import SubjectHasher
from monitor.core.policy import parse_policy
from tests.conftest import TEST_KEY, request, response, rules_of, run
from tests.live.conftest import BASE, NO_EMPLOYER, Worker, consume_all, create_topics, reloads_between_pairs


def test_detector_judges_by_the_new_policy_after_set_policy() -> None:
    detector = Detector(parse_policy(NO_EMPLOYER, "a.toml"), SubjectHasher(TEST_KEY), 60_000)
    before = run(detector, [request(request_id="a"), response(request_id="a", disclosed={"employer": "Acme"})])
    assert rules_of(before) == ["unpermitted_field"]
    detector.set_policy(parse_policy(BASE, "b.toml"))
    after = run(detector, [request(request_id="b"), response(request_id="b", disclosed={"employer": "Acme"})])
    assert after == []
    assert detector.pending()["entries"] == 2  # join state carried over


def test_worker_reloads_the_policy_on_sighup_and_refuses_a_broken_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    policy = tmp_path / "policy.toml"
    policy.write_text(NO_EMPLOYER)
    log = tmp_path / "worker.log"
    worker = Worker(kafka_bootstrap, prefix, policy, log)

    def unpermitted() -> set[str]:
        alerts = asyncio.run(consume_all(kafka_bootstrap, f"{prefix}.alerts", quiet_ms=1500))
        return {a["request_id"] for _, a in alerts if a["rule"] == "unpermitted_field"}

    try:
        reloads_between_pairs(kafka_bootstrap, prefix, worker, policy, log, BASE, BASE + "\n[[agreement]]\nid = 7\n",
                              "policy")  # fmt: skip
    finally:
        assert worker.stop() == 0
    # Under A the employer was unpermitted; B permits it, and B stays in force after the broken reload.
    assert unpermitted() == {"under-a"}
    refused = next(line for line in log.read_text().splitlines() if "policy reload refused" in line)
    assert "policy.toml" in refused and "id" in refused
