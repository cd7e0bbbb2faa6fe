"""Metrics fed by the core: what is counted, bounded labels, and a clean exposition (checked by promtool)."""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from monitor.cli import main
from monitor.core.detector import Detector
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.policy import Policy
from monitor.core.timeutil import parse_time_ms
from monitor.outputs.metrics import (
    JOIN_LATENCY_BUCKETS,
    MAX_UNITS,
    OTHER,
    UNKNOWN,
    BatchedObserver,
    BoundedLabel,
    Metrics,
    observe_all,
)
from tests.conftest import TEST_KEY, disposal, request, response, run
from tests.services import free_port, metric_sum, tool


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the creation times."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def _detector(
    policy: Policy, hasher: SubjectHasher, lateness_ms: int = 60_000
) -> tuple[Detector, Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(registry, policy)
    detector = Detector(policy, hasher, allowed_lateness_ms=lateness_ms, observer=metrics)
    metrics.track_state(detector.pending, lambda: detector.watermark_ms, cache_s=0)
    return detector, metrics, registry


def test_events_disclosures_and_join_latency_are_counted_whatever_the_order(
    policy: Policy, hasher: SubjectHasher
) -> None:
    events = [
        request(request_id="r1"),
        response(request_id="r1"),  # two hours after its request
        response(
            request_id="r2",
            responded_at="2025-06-02T13:00:00Z",
            disclosed={"address": {"zip": "30301"}, "employer": "Acme"},
        ),
        request(request_id="r2", submitted_at="2025-06-02T12:30:00Z"),  # answered 30 min later, arrives after
        response(request_id="r3", agreement_id="not-in-policy", disclosed=None, match={"status": "no_match"}),
        disposal(request_id="r1"),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(events)  # any order within the allowed lateness (two days)
        detector, _metrics, registry = _detector(policy, hasher, lateness_ms=2 * 86_400_000)
        run(detector, events)
        assert _value(registry, "dismon_events_total", type="request", agreement="a1") == 2
        assert _value(registry, "dismon_events_total", type="response", agreement="a1") == 2
        assert _value(registry, "dismon_events_total", type="response", agreement=UNKNOWN) == 1
        assert _value(registry, "dismon_events_total", type="disposal", agreement="a1") == 1
        assert (
            _value(registry, "dismon_disclosures_total", agreement="a1", requester_agency="ICE", field="employer") == 1
        )
        assert (
            _value(registry, "dismon_disclosures_total", agreement="a1", requester_agency="ICE", field="address") == 2
        )
        assert _value(registry, "dismon_disclosing_responses_total", agreement="a1", requester_agency="ICE") == 2
        # One latency per joined pair, in event time, whichever side came first.
        assert _value(registry, "dismon_join_latency_seconds_count", agreement="a1") == 2
        assert _value(registry, "dismon_join_latency_seconds_sum", agreement="a1") == 2 * 3600 + 30 * 60


@settings(max_examples=200, deadline=None)
@given(amounts=st.lists(st.one_of(st.sampled_from(JOIN_LATENCY_BUCKETS), st.floats(0, 1e7)), max_size=60))
def test_observing_many_at_once_gives_the_histogram_observing_each_gives(amounts: list[float]) -> None:
    """observe_all writes into prometheus_client's private fields: equal to observe() one by one, bucket
    bounds included, or an upgrade of the client broke it."""
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    for registry, observe in ((one_by_one, None), (at_once, observe_all)):
        child = Histogram("h", "h", ["a"], buckets=JOIN_LATENCY_BUCKETS, registry=registry).labels("x")
        if observe is None:
            for amount in amounts:
                child.observe(amount)
        else:
            observe(child, amounts)
    assert _samples(at_once) == _samples(one_by_one)


def test_the_workers_batched_counts_reach_the_metrics_at_a_flush(policy: Policy, hasher: SubjectHasher) -> None:
    """The worker's observer counts events and join latencies per batch: after a flush the metrics are what
    the core's calls made them, one by one, and before it they are not yet there."""
    events = [request(request_id="r1"), response(request_id="r1"), request(request_id="r2"), disposal(request_id="r1")]
    events += [response(request_id="r9", agreement_id="not-in-policy", disclosed=None, match={"status": "no_match"})]
    direct, batched = CollectorRegistry(), CollectorRegistry()
    run(Detector(policy, hasher, observer=Metrics(direct, policy)), events)
    observer = BatchedObserver(Metrics(batched, policy))
    run(Detector(policy, hasher, observer=observer), events)
    assert _value(batched, "dismon_events_total", type="request", agreement="a1") == 0
    observer.flush()
    assert _value(batched, "dismon_events_total", type="request", agreement="a1") == 2
    assert _value(batched, "dismon_join_latency_seconds_count", agreement="a1") == 1
    assert _samples(batched) == _samples(direct)
    observer.flush()  # nothing new: nothing counted twice
    assert _samples(batched) == _samples(direct)


def test_late_events_and_scrape_time_state(policy: Policy, hasher: SubjectHasher) -> None:
    detector, metrics, registry = _detector(policy, hasher)
    # r1 discloses an employer after the court order: improper, disposal awaited.
    findings = run(
        detector,
        [
            request(),
            response(disclosed={"employer": "Acme"}),
            request(request_id="r9", submitted_at="2025-06-02T15:00:00Z"),
        ],
    )
    for finding in findings:
        metrics.finding(finding, emitted_ms=finding.event_time_ms + 250)
    assert _value(registry, "dismon_open_improper_disclosures") == 1
    assert _value(registry, "dismon_join_pending_requests") == 1  # r9
    assert _value(registry, "dismon_watermark_timestamp_seconds") == parse_time_ms("2025-06-02T14:59:00Z") / 1000
    assert (
        _value(
            registry,
            "dismon_findings_total",
            rule="restricted_disclosure",
            severity="critical",
            status="firing",
            agreement="a1",
            requester_unit="ERO Atlanta",
            policy_version=policy.version,  # the agreement has no version label of its own
        )
        == 1
    )
    assert _value(registry, "dismon_detection_lag_seconds_bucket", severity="critical", le="0.25") >= 1
    run(detector, [request(request_id="old", submitted_at="2025-06-01T00:00:00Z")])
    assert _value(registry, "dismon_late_events_total") == 1
    run(detector, [disposal(disposed_at="2025-06-02T16:00:00Z")])
    assert _value(registry, "dismon_open_improper_disclosures") == 0


def test_label_values_are_bounded() -> None:
    units = BoundedLabel(MAX_UNITS)
    assert [units(f"unit-{i}") for i in range(MAX_UNITS)] == [f"unit-{i}" for i in range(MAX_UNITS)]
    assert units("one-too-many") == OTHER
    assert units("unit-3") == "unit-3"
    assert units(None) == UNKNOWN
    agencies = BoundedLabel(MAX_UNITS, {"ICE"})
    assert (agencies("ICE"), agencies("Someone Else")) == ("ICE", OTHER)


def test_exposition_passes_promtool_and_carries_no_request_ids(policy: Policy, hasher: SubjectHasher) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make setup` installs it (deploy/local/tools.sh)"
    detector, metrics, registry = _detector(policy, hasher)
    events = [request(request_id=f"req-{i}", requester__unit=f"unit-{i}") for i in range(100)]
    for finding in run(detector, [*events, response(request_id="req-1", disclosed={"employer": "Acme"})]):
        metrics.finding(finding, finding.event_time_ms)
    metrics.invalid.labels("wrong_type:subject.name").inc()
    text = generate_latest(registry)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert b"req-1" not in text and b"Garcia" not in text
    assert text.count(b"requester_unit=") <= MAX_UNITS + 1


def test_replay_serves_the_same_metrics_while_it_runs(tmp_path: Path) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--requests", "400", "--fault", "all", "--seed", "3"]) == 0
    with gzip.open(tmp_path / "events.jsonl.gz") as log:
        events = [orjson.loads(line) for line in log.read().splitlines()]
    port = free_port()
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "replay",
            "--policy",
            str(tmp_path / "policy.toml"),
            "--alerts-out",
            str(tmp_path / "alerts.jsonl"),
            "--metrics-port",
            str(port),
            "--metrics-linger",
            "30s",
            str(tmp_path / "events.jsonl.gz"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DISMON_SUBJECT_KEY": TEST_KEY.decode()},
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                text = ""
            if metric_sum(text, "dismon_events_total{") == len(events):
                break
            time.sleep(0.2)
        assert metric_sum(text, "dismon_events_total{") == len(events)
        alerts = (tmp_path / "alerts.jsonl").read_bytes().count(b"\n")
        assert metric_sum(text, "dismon_findings_total{") == alerts > 0
        check = subprocess.run(
            [tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
        )
        assert check.returncode == 0, check.stdout + check.stderr
        # Nothing personal: no subject's last name, street or date of birth in the exposition.
        for event in events:
            if event["type"] == "request":
                subject = event["subject"]
                for value in (
                    subject["name"]["last"],
                    (subject.get("address") or {}).get("street"),
                    subject.get("dob"),
                ):
                    assert not value or len(value) < 4 or value not in text, value
    finally:
        replay.terminate()
        replay.wait(timeout=30)


def test_findings_are_counted_by_the_version_that_judged_them_with_bounded_labels(policy: Policy) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, policy)
    judged = Finding(
        "a", "unpermitted_field", "critical", "a1", "r1", None, 0, 0, "s", None, {"policy_version": policy.version}
    )
    unknown = dataclasses.replace(judged, details={"policy_version": "from a file since replaced"})
    for finding in (judged, unknown, dataclasses.replace(judged, details={})):
        metrics.finding(finding)
    counted = {
        s.labels["policy_version"]: s.value
        for m in registry.collect()
        if m.name == "dismon_findings"
        for s in m.samples
        if s.name == "dismon_findings_total"
    }
    assert counted == {policy.version: 1, "other": 1, "": 1}
