"""Deploy files, checked by the tools that will read them: promtool, docker-compose, a Kubernetes schema
validator, and the dashboard generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from monitor.core.rules import RULES
from tests.services import REPO, tool

DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"


def _run(*argv: str, cwd: Path = REPO) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def test_prometheus_config_and_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    _run(promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml"))
    assert "SUCCESS: 12 rules found" in _run(
        promtool, "check", "rules", str(DEPLOY / "prometheus/rules/dismon.rules.yml")
    )


def test_alert_rules_unit_tests_pass_and_cover_every_alert() -> None:
    tests = DEPLOY / "prometheus/tests/dismon.test.yml"
    _run(tool("promtool"), "test", "rules", str(tests))
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/dismon.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load(tests.read_text())["tests"]
    fired = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    silent = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert fired == alerts and silent == alerts  # each shown firing and not firing


def test_docker_compose_file_is_valid() -> None:
    _run(tool("docker-compose"), "-f", "docker-compose.yml", "config", "-q", cwd=DEPLOY)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"kafka", "worker-1", "worker-2", "prometheus", "alertmanager", "grafana"} <= set(compose["services"])


@pytest.mark.parametrize(
    "manifest", sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_kubernetes_manifests_are_valid(manifest: str) -> None:
    document = yaml.safe_load((KUBERNETES / manifest).read_text())
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        schema = json.loads((REPO / f"tests/schemas/{document['kind'].lower()}.json").read_text())
        jsonschema.validate(document, schema)
    else:
        _run(
            str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", str(KUBERNETES / manifest)
        )


def test_kustomization_lists_every_manifest_and_the_prometheus_rule_matches_the_rules_file(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    rule = yaml.safe_load((KUBERNETES / "prometheusrule.yaml").read_text())
    assert rule["spec"] == yaml.safe_load((DEPLOY / "prometheus/rules/dismon.rules.yml").read_text())
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    _run(tool("promtool"), "check", "rules", str(extracted))


def test_kubernetes_worker_reads_the_policy_and_key_it_is_given() -> None:
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["DISMON_SUBJECT_KEY_FILE"].startswith(mounts["subject-key"] + "/")
    assert container["args"][container["args"].index("--policy") + 1].startswith(mounts["policy"] + "/")
    policy = yaml.safe_load((KUBERNETES / "configmap-policy.yaml").read_text())["data"]["policy.toml"]
    from monitor.core.policy import parse_policy

    assert parse_policy(policy, "configmap-policy.yaml").agreements  # the example policy loads


def test_dashboards_are_generated_from_code_and_up_to_date() -> None:
    _run(sys.executable, str(REPO / "dashboards/generate.py"), "--check")
    titles = {json.loads(p.read_text())["title"] for p in (REPO / "dashboards").glob("*.json")}
    assert titles == {
        "Disclosure Monitor / Overview",
        "Disclosure Monitor / Incident",
        "Disclosure Monitor / Pipeline health",
    }


def test_every_rule_has_a_runbook_with_the_four_sections() -> None:
    for rule in RULES:
        text = (REPO / f"docs/runbooks/{rule}.md").read_text()
        for section in (
            "## What it means",
            "## How to confirm",
            "## How to stop the leak",
            "## Getting the data disposed",
        ):
            assert section in text, f"{rule}: missing {section!r}"
    pipeline = (REPO / "docs/runbooks/pipeline.md").read_text()
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/dismon.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].partition("#")[2]
            if anchor:
                assert f"## {anchor.replace('-', ' ')}" in pipeline.lower(), anchor
