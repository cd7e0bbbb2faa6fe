"""Shared fixtures: a policy, a detector with a fixed key, and builders for events."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from monitor.core.detector import Detector
from monitor.core.events import Event, Invalid, decode
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.policy import Policy, parse_policy

TEST_KEY = b"test-key-0123456789abcdef"

POLICY_TOML = """
[[agreement]]
id = "a1"
requesters = ["ICE"]
disclosers = ["IRS"]
effective_from = 2025-04-07
effective_until = 2026-04-06
permitted_fields = ["address", "name", "employer"]
required_request_fields = ["subject.name.last", "subject.address.street", "subject.address.city",
  "subject.address.state", "subject.address.zip", "legal_basis.statute", "legal_basis.case_id",
  "legal_basis.removal_order"]
required_match = { status = "matched", min_score = 0.9, on = ["name", "address"] }
response_sla = "72h"
join_window = "14d"
orphan_grace = "1h"
disposal_deadline = "7d"
authorized_signatories = ["ICE Director"]
placeholder_values = ["on record"]

[[agreement.restriction]]
fields = ["employer"]
from = 2025-06-01
reason = "court order: no employer disclosure"
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TOML, "test-policy.toml")


@pytest.fixture
def hasher() -> SubjectHasher:
    return SubjectHasher(TEST_KEY)


@pytest.fixture
def detector(policy: Policy, hasher: SubjectHasher) -> Detector:
    return Detector(policy, hasher, allowed_lateness_ms=60_000)


_REQUEST: dict[str, Any] = {
    "type": "request",
    "request_id": "r1",
    "agreement_id": "a1",
    "requester": {"agency": "ICE", "unit": "ERO Atlanta", "signatory": "ICE Director"},
    "submitted_at": "2025-06-02T10:00:00Z",
    "subject": {
        "name": {"first": "Ana", "last": "Garcia"},
        "address": {"street": "12 Oak Street", "city": "Atlanta", "state": "GA", "zip": "30301"},
        "dob": "1980-01-02",
    },
    "legal_basis": {"statute": "8 U.S.C. 1231", "case_id": "A123456789", "removal_order": True},
}
_RESPONSE: dict[str, Any] = {
    "type": "response",
    "request_id": "r1",
    "agreement_id": "a1",
    "responder": {"agency": "IRS"},
    "responded_at": "2025-06-02T12:00:00Z",
    "match": {"status": "matched", "score": 0.97, "matched_on": ["name", "address"]},
    "disclosed": {"address": {"street": "9 Elm Court", "city": "Atlanta", "state": "GA", "zip": "30302"}},
}
_DISPOSAL: dict[str, Any] = {
    "type": "disposal",
    "request_id": "r1",
    "agreement_id": "a1",
    "disposed_at": "2025-06-03T12:00:00Z",
}


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    if value is _DELETE:
        document.pop(leaf, None)
    else:
        document[leaf] = value


_DELETE = object()
DELETE: Any = _DELETE


def build(template: dict[str, Any], changes: dict[str, Any]) -> Event:
    """A valid event from a template, with dotted-path ``changes`` (DELETE removes a key)."""
    document = copy.deepcopy(template)
    for path, value in changes.items():
        _set(document, path, value)
    event = decode(orjson.dumps(document))
    assert not isinstance(event, Invalid), event
    return event


def request(**changes: Any) -> Event:
    return build(_REQUEST, {k.replace("__", "."): v for k, v in changes.items()})


def response(**changes: Any) -> Event:
    return build(_RESPONSE, {k.replace("__", "."): v for k, v in changes.items()})


def disposal(**changes: Any) -> Event:
    return build(_DISPOSAL, {k.replace("__", "."): v for k, v in changes.items()})


def raw(template: str, **changes: Any) -> bytes:
    document = copy.deepcopy({"request": _REQUEST, "response": _RESPONSE, "disposal": _DISPOSAL}[template])
    for path, value in changes.items():
        _set(document, path.replace("__", "."), value)
    return orjson.dumps(document)


def run(detector: Detector, events: Sequence[Event], until: str | None = None) -> list[Finding]:
    """Feed events in the given order (and optionally advance the clock); all findings."""
    from monitor.core.timeutil import parse_time_ms

    found: list[Finding] = []
    for event in events:
        found.extend(detector.process(event))
    if until is not None:
        found.extend(detector.advance_to(parse_time_ms(until)))
    return found


def rules_of(findings: Sequence[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


Runner = Callable[..., list[Finding]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the broker is marked ``kafka``: ``pytest -m "not kafka"`` runs the rest in seconds."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real broker from deploy/local/kafka.sh (started once, reused if already running). Fails, never skips."""
    import pathlib
    import subprocess

    script = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "local" / "kafka.sh"
    result = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the local Kafka broker did not start:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]
