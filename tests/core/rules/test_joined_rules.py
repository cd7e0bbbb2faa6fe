"""Rules judged on a request/response pair, positive and negative."""

from __future__ import annotations

import pytest

from monitor.core.detector import Detector
from tests.conftest import DELETE, request, response, rules_of, run


def test_a_clean_pair_raises_nothing(detector: Detector) -> None:
    assert run(detector, [request(), response()], until="2025-06-20T00:00:00Z") == []


@pytest.mark.parametrize(
    ("changes", "field", "check"),
    [
        ({"subject__address__street": "Failed to Provide"}, "subject.address.street", "placeholder"),
        ({"subject__address__street": "Unknown Address"}, "subject.address.street", "placeholder"),
        ({"subject__address__street": "NA NA"}, "subject.address.street", "placeholder"),
        ({"subject__address__street": "Oak Street"}, "subject.address.street", "street_without_number"),
        ({"subject__address__street": "30301"}, "subject.address.street", "street_without_name"),
        ({"subject__address__street": "On Record!"}, "subject.address.street", "placeholder"),  # policy extra
        ({"subject__address__zip": "12345"}, "subject.address.zip", "placeholder"),
        ({"subject__address__zip": "3030"}, "subject.address.zip", "bad_zip"),
        ({"subject__address__city": ""}, "subject.address.city", "empty"),
        ({"subject__address__state": None}, "subject.address.state", "absent"),
        ({"subject__address": {"zip": "30301"}}, "subject.address.street", "absent"),  # a lone zip
    ],
)
def test_incomplete_request_disclosure_names_field_and_check(
    detector: Detector, changes: dict[str, object], field: str, check: str
) -> None:
    findings = run(detector, [request(**changes), response()])
    assert rules_of(findings) == ["incomplete_request_disclosure"]
    assert {"field": field, "check": check} in findings[0].details["missing"]


def test_incomplete_request_without_disclosure_is_fine(detector: Detector) -> None:
    no_match = response(match={"status": "no_match"}, disclosed=DELETE)
    assert run(detector, [request(subject__address__street="Unknown"), no_match]) == []


def test_no_personal_data_in_incomplete_finding(detector: Detector) -> None:
    findings = run(detector, [request(subject__address__street="Failed to Provide"), response()])
    alert = str(findings[0].to_alert(0))
    for secret in ("Garcia", "Ana", "Failed to Provide", "Elm Court", "1980-01-02", "30301"):
        assert secret not in alert


@pytest.mark.parametrize(
    ("changes", "field", "check"),
    [
        ({"legal_basis__case_id": ""}, "legal_basis.case_id", "empty"),
        ({"legal_basis__case_id": "N/A"}, "legal_basis.case_id", "placeholder"),
        ({"legal_basis__removal_order": False}, "legal_basis.removal_order", "false"),
        ({"legal_basis": DELETE}, "legal_basis.statute", "absent"),
    ],
)
def test_missing_legal_basis_disclosure(detector: Detector, changes: dict[str, object], field: str, check: str) -> None:
    findings = run(detector, [request(**changes), response()])
    assert rules_of(findings) == ["missing_legal_basis_disclosure"]
    assert {"field": field, "check": check} in findings[0].details["missing"]


@pytest.mark.parametrize(
    ("match", "failed"),
    [
        ({"status": "ambiguous", "score": 0.95, "matched_on": ["name", "address"]}, ["status"]),
        ({"status": "matched", "score": 0.5, "matched_on": ["name", "address"]}, ["score"]),
        ({"status": "matched", "matched_on": ["name", "address"]}, ["score"]),
        ({"status": "matched", "score": 0.95, "matched_on": ["name"]}, ["keys"]),
    ],
)
def test_weak_match_disclosure(detector: Detector, match: dict[str, object], failed: list[str]) -> None:
    findings = run(detector, [request(), response(match=match)])
    assert rules_of(findings) == ["weak_match_disclosure"]
    assert findings[0].details["failed"] == failed


def test_weak_match_without_disclosure_is_fine(detector: Detector) -> None:
    weak = response(match={"status": "ambiguous", "score": 0.3}, disclosed={"address": ""})
    assert run(detector, [request(), weak]) == []


def test_unpermitted_field(detector: Detector) -> None:
    findings = run(detector, [request(), response(disclosed__income=52000, disclosed__tin="123-45-6789")])
    assert rules_of(findings) == ["unpermitted_field"]
    assert findings[0].details["unpermitted_fields"] == ["income", "tin"]
    assert "123-45-6789" not in str(findings[0].to_alert(0))


def test_permitted_fields_are_fine(detector: Detector) -> None:
    assert run(detector, [request(), response(disclosed__name={"first": "Ana", "last": "Garcia"})]) == []


@pytest.mark.parametrize(
    "disclosed_name", ["Maria Lopez", {"first": "Ana", "last": "Lopez"}, {"first": "Mei", "last": "Garcia"}]
)
def test_subject_mismatch(detector: Detector, disclosed_name: object) -> None:
    findings = run(detector, [request(), response(disclosed__name=disclosed_name)])
    assert rules_of(findings) == ["subject_mismatch"]


@pytest.mark.parametrize("disclosed_name", ["ANA GARCIA", "Garcia", {"last": "garcia."}, "Ana  Garcia"])
def test_same_subject_is_fine(detector: Detector, disclosed_name: object) -> None:
    assert run(detector, [request(), response(disclosed__name=disclosed_name)]) == []


def test_duplicate_disclosure_once_per_request(detector: Detector) -> None:
    second = response(responded_at="2025-06-02T15:00:00Z")
    third = response(responded_at="2025-06-02T16:00:00Z")
    findings = run(detector, [request(), response(), second, third])
    assert rules_of(findings) == ["duplicate_disclosure"]


def test_redelivered_response_is_not_a_duplicate(detector: Detector) -> None:
    assert run(detector, [request(), response(), response()]) == []


def test_one_event_may_raise_several_rules(detector: Detector) -> None:
    events = [
        request(subject__address__zip="00000", legal_basis__case_id=None),
        response(match={"status": "matched", "score": 0.2}, disclosed__income=1),
    ]
    assert rules_of(run(detector, events)) == [
        "incomplete_request_disclosure",
        "missing_legal_basis_disclosure",
        "unpermitted_field",
        "weak_match_disclosure",
    ]
