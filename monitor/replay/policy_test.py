"""``dismon policy test``: test files written next to a policy, in the manner of ``promtool test rules``.

A test file is TOML::

    policy = "irs-ice-2025.toml"          # relative to the test file

    [[case]]
    name = "an address disclosed for a placeholder request is critical"
    events = '''
    {"type": "request", "request_id": "t1", ...}
    {"type": "response", "request_id": "t1", ...}
    '''
    until = "2025-08-09T00:00:00Z"        # optional: advance the clock (timers: SLA, orphans, disposal, windows)
    expect = [{ rule = "incomplete_request_disclosure", request_id = "t1" }]
    absent = [{ rule = "unpermitted_field" }]

Each case runs its events (JSON lines, in event-time order as a replay reads them) through a fresh detector
of the policy. Every ``expect`` entry must match a finding and no ``absent`` entry may; an entry matches a
finding when each key it gives (``rule``, ``request_id``, ``agreement_id``, ``severity``, ``status``) is
equal. ``status`` is ``firing`` unless given.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from monitor.config import load_policy
from monitor.core.detector import DEFAULT_ALLOWED_LATENESS_MS, Detector
from monitor.core.events import Invalid, decode, event_time_ms
from monitor.core.findings import Finding, SubjectHasher
from monitor.core.timeutil import parse_time_ms
from monitor.errors import PolicyError, UsageError

#: Findings in a policy test carry keyed subject hashes like any other; the key only has to be fixed.
_TEST_KEY = b"dismon-policy-test-key-0000"
_MATCH_KEYS = ("rule", "request_id", "agreement_id", "severity", "status")


@dataclass(slots=True)
class CaseResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)
    findings: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures


def run_file(path: str) -> list[CaseResult]:
    """Every case of one test file (:class:`UsageError` for a file that is not a valid test file)."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    if not isinstance(document.get("policy"), str):
        raise UsageError(f"{path}: 'policy' (the policy file, relative to this one) is required")
    policy_path = Path(path).parent / document["policy"]
    try:
        policy = load_policy(str(policy_path))
    except PolicyError as exc:
        raise UsageError(f"{path}: its policy is broken: {exc}") from exc
    cases = document.get("case")
    if not isinstance(cases, list) or not cases:
        raise UsageError(f"{path}: no [[case]]")
    return [_run_case(path, index, case, policy) for index, case in enumerate(cases)]


def _run_case(path: str, index: int, case: Mapping[str, Any], policy: Any) -> CaseResult:
    result = CaseResult(path, str(case.get("name", f"case {index + 1}")))
    try:
        events = _events(case.get("events", ""))
        expect = _entries(case.get("expect", []), "expect", default_status="firing")
        absent = _entries(case.get("absent", []), "absent", default_status=None)
        until_ms = parse_time_ms(case["until"]) if "until" in case else None
    except (ValueError, TypeError) as exc:
        result.failures.append(f"case [{index}] is malformed: {exc}")
        return result
    detector = Detector(policy, SubjectHasher(_TEST_KEY), DEFAULT_ALLOWED_LATENESS_MS)
    findings: list[Finding] = []
    for event_ms, event in events:
        findings += detector.process(event, event_ms)
    if until_ms is not None:
        findings += detector.advance_to(until_ms)
    result.findings = len(findings)
    seen = ", ".join(sorted({f"{f.rule}/{f.request_id or '-'}/{f.status}" for f in findings})) or "none"
    for entry in expect:
        if not any(_matches(entry, f) for f in findings):
            result.failures.append(f"expected {_describe(entry)}: not found (found: {seen})")
    for entry in absent:
        if any(_matches(entry, f) for f in findings):
            result.failures.append(f"expected no {_describe(entry)}: found")
    return result


def _events(text: Any) -> list[tuple[int, Any]]:
    if not isinstance(text, str):
        raise TypeError("events must be a string of JSON lines")
    events = []
    for number, line in enumerate(text.strip().splitlines(), 1):
        decoded = decode(line.strip().encode())
        if isinstance(decoded, Invalid):
            raise ValueError(f"event {number} is invalid ({decoded.reason})")
        events.append((event_time_ms(decoded), decoded))
    return sorted(events, key=lambda item: item[0])  # stable: as a replay orders them


def _entries(value: Any, key: str, default_status: str | None) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) and "rule" in v for v in value):
        raise TypeError(f"{key} must be a list of tables with at least a rule")
    entries = []
    for entry in value:
        unknown = set(entry) - set(_MATCH_KEYS)
        if unknown:
            raise ValueError(f"{key}: unknown key(s) {sorted(unknown)}; known: {', '.join(_MATCH_KEYS)}")
        entries.append({**entry, **({"status": default_status} if default_status and "status" not in entry else {})})
    return entries


def _matches(entry: Mapping[str, str], finding: Finding) -> bool:
    return all(getattr(finding, key) == value for key, value in entry.items())


def _describe(entry: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in entry.items())


def junit_xml(results: Sequence[CaseResult]) -> bytes:
    """The results as JUnit XML, one testsuite per test file."""
    root = ElementTree.Element("testsuites")
    for file in dict.fromkeys(r.file for r in results):
        cases = [r for r in results if r.file == file]
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=file,
            tests=str(len(cases)),
            failures=str(sum(not r.passed for r in cases)),
        )
        for result in cases:
            case = ElementTree.SubElement(suite, "testcase", classname=file, name=result.name)
            for failure in result.failures:
                ElementTree.SubElement(case, "failure", message=failure).text = failure
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))
