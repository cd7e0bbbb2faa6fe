"""Real US address forms (USPS Publication 28) against placeholders: each with its verdict and check name."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli import main
from monitor.core.address import FORMS, classify
from monitor.core.checks import RequiredFields, checked_street_problem, normalize, street_problem, zip_problem
from monitor.core.detector import Detector
from monitor.core.events import Event, Request
from monitor.core.explain import split_address
from monitor.core.findings import SubjectHasher
from monitor.core.policy import parse_policy
from monitor.errors import PolicyError
from monitor.simulate.people import JUNK_ADDRESSES, address, junk_address
from monitor.simulate.policies import irs_ice_policy
from tests.conftest import POLICY_TOML, TEST_KEY, request, response, rules_of, run

#: (street line, its form or the check it fails)
STREETS = [
    ("12 Oak Street", "street"),
    ("1600 Pennsylvania Ave NW", "street"),
    ("Apt 4, 221B Baker St", "street"),
    ("One World Trade Center", "street"),
    ("Twenty-Two Jump Street", "street"),
    ("One Hundred Twenty Main St", "street"),
    ("123 1/2 Main St", "street"),
    ("45-67 Bell Blvd", "street"),
    ("N6W23001 Bluemound Rd", "street"),
    ("Urb Las Gladiolas 150 Calle A", "street"),
    ("Calle Aurora 1234", "street"),
    ("URB ROYAL OAK, 123 CALLE 1", "street"),
    ("PO Box 123", "po_box"),
    ("P.O. Box 4567", "po_box"),
    ("Post Office Box 9", "po_box"),
    ("POB 77", "po_box"),
    ("Box 12", "po_box"),
    ("RR 2 Box 152", "rural_route"),
    ("Rural Route 4, Box 12A", "rural_route"),
    ("HC 68 Box 23", "rural_route"),
    ("Highway Contract 2 Box 5", "rural_route"),
    ("PSC 1234 Box 12345", "military"),
    ("Unit 2050 Box 4190", "military"),
    ("CMR 450 Box 123", "military"),
    ("General Delivery", "general_delivery"),
    ("GENERAL DELIVERY", "general_delivery"),
    # no complete address line
    ("Main Street", "street_without_number"),
    ("Oak Street", "street_without_number"),
    ("Main Street Apt 4", "street_without_number"),
    ("Unit 5", "street_without_number"),
    ("Urb Las Gladiolas Calle A", "street_without_number"),
    ("World Trade Center", "street_without_number"),
    ("30301", "street_without_name"),
    ("30301-1234", "street_without_name"),
    ("221B", "street_without_name"),
    ("One", "street_without_name"),
    ("PO Box", "box_without_number"),
    ("RR 2", "box_without_number"),
    ("PSC 1234", "box_without_number"),
]

#: Placeholders of the real case and its kin: caught before any form is looked for.
PLACEHOLDER_STREETS = ["Failed to Provide", "Unknown Address", "NA NA", "N/A", "see file", "none", "Address unknown"]


@pytest.mark.parametrize(("street", "verdict"), STREETS)
def test_street_forms(street: str, verdict: str) -> None:
    assert classify(normalize(street)) == verdict
    expected = None if verdict in FORMS else verdict
    assert street_problem(street) == expected
    assert checked_street_problem(street) == expected


@pytest.mark.parametrize("street", PLACEHOLDER_STREETS)
def test_placeholders_stay_flagged(street: str) -> None:
    assert street_problem(street) == "placeholder"


@pytest.mark.parametrize(
    ("zip_code", "problem"),
    [("10007", None), ("99801", None), ("00926", None), ("96205-1234", None), ("12345", "placeholder"),
     ("1234", "bad_zip"), ("Failed to Provide", "placeholder"), ("", "empty")],
)  # fmt: skip
def test_zip_codes(zip_code: str, problem: str | None) -> None:
    assert zip_problem(zip_code) == problem


@pytest.mark.parametrize(("street", "verdict"), [(s, v) for s, v in STREETS if v in FORMS])
def test_a_form_the_agreement_does_not_accept_is_named(street: str, verdict: str) -> None:
    residential = frozenset({"street"})
    expected = None if verdict == "street" else f"{verdict}_not_accepted"
    assert street_problem(street, forms=residential) == expected
    assert checked_street_problem(street, forms=residential) == expected


_PUNCTUATION = st.sampled_from([".", ",", "-", "/", "#", "'", '"', ";"])


@st.composite
def _respelled(draw: st.DrawFn, street: str) -> str:
    """The same address as a person might type it: other case, spacing and punctuation."""
    out = []
    for char in street:
        if char == " ":
            out.append(draw(st.sampled_from([" ", "  ", "\t", " , ", ". "])))
        else:
            out.append(char.upper() if draw(st.booleans()) else char.lower())
            if draw(st.integers(0, 9)) == 0:
                out.append(draw(_PUNCTUATION))
    return draw(st.sampled_from(["", " ", "  "])) + "".join(out) + draw(st.sampled_from(["", ".", " "]))


@given(
    st.sampled_from([s for s, _ in STREETS] + PLACEHOLDER_STREETS).flatmap(
        lambda s: st.tuples(st.just(s), _respelled(s))
    )
)
def test_case_whitespace_and_punctuation_never_flip_a_verdict(pair: tuple[str, str]) -> None:
    original, respelled = pair
    for forms in (frozenset(FORMS), frozenset({"street"})):
        assert street_problem(respelled, forms=forms) == street_problem(original, forms=forms)


def _policy_with(extra: str) -> str:
    return POLICY_TOML.replace('placeholder_values = ["on record"]', f'placeholder_values = ["on record"]\n{extra}')


@pytest.mark.parametrize(
    ("address", "forms", "missing"),
    [
        ({"street": "One World Trade Center", "city": "New York", "state": "NY", "zip": "10007"}, None, None),
        ({"street": "General Delivery", "city": "Juneau", "state": "AK", "zip": "99801"}, None, None),
        ({"street": "PSC 1234 Box 12345", "city": "APO", "state": "AE", "zip": "09204"}, None, None),
        ({"street": "PO Box 123", "city": "Atlanta", "state": "GA", "zip": "30301-0123"}, None, None),
        (
            {"street": "PO Box 123", "city": "Atlanta", "state": "GA", "zip": "30301"},
            '["street"]',
            "po_box_not_accepted",
        ),
        ({"street": "Failed to Provide", "city": "Atlanta", "state": "GA", "zip": "30301"}, None, "placeholder"),
    ],
)
def test_a_valid_address_raises_no_critical_alert(
    address: dict[str, str], forms: str | None, missing: str | None
) -> None:
    text = POLICY_TOML if forms is None else _policy_with(f"address_forms = {forms}")
    detector = Detector(parse_policy(text, "p.toml"), SubjectHasher(TEST_KEY), allowed_lateness_ms=60_000)
    findings = run(detector, [request(subject__address=address), response()])
    if missing is None:
        assert findings == []
    else:
        assert rules_of(findings) == ["incomplete_request_disclosure"]
        assert {"field": "subject.address.street", "check": missing} in findings[0].details["missing"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("[]", "must name at least one form"), ('["street", "igloo"]', "unknown form(s) ['igloo']")],
)
def test_address_forms_are_checked_when_the_policy_loads(value: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(_policy_with(f"address_forms = {value}"), "p.toml")
    assert "address_forms" in str(caught.value) and reason in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("One World Trade Center, New York, NY 10007", ("One World Trade Center", "New York", "NY", "10007")),
        ("General Delivery, Juneau, AK, 99801", ("General Delivery", "Juneau", "AK", "99801")),
        ("Urb Las Gladiolas, 150 Calle A, San Juan, PR 00926-1234", ("Urb Las Gladiolas 150 Calle A", "San Juan", "PR", "00926-1234")),
        ("30301", (None, None, None, "30301")),
        ("Failed to Provide", ("Failed to Provide", None, None, None)),
    ],
)  # fmt: skip
def test_a_pasted_address_is_split_into_its_fields(text: str, fields: tuple[str | None, ...]) -> None:
    address = split_address(text)
    assert (address.street, address.city, address.state, address.zip) == fields


def test_explain_address_gives_the_detectors_verdict_and_never_the_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(_policy_with('address_forms = ["street", "general_delivery"]'))
    pasted = (
        "One World Trade Center, New York, NY 10007\nPO Box 12, Juneau, AK 99801\nFailed to Provide, Austin, TX 12345\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(pasted))
    assert main(["policy", "check", str(policy), "--explain-address", "-"]) == 0
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if "verdict" in line]
    assert len(verdicts) == 3
    assert "raises nothing" in verdicts[0] and "incomplete_request_disclosure" in verdicts[1] in verdicts[2]
    assert "fails: po_box_not_accepted" in out and "passes: form street" in out
    assert "subject.address.zip      fails: placeholder" in out
    for word in ("World", "Juneau", "Failed", "Austin", "10007", "12345"):
        assert word not in out
    assert main(["policy", "check", str(policy), "--explain-address", "x", "--agreement", "nope"]) == 2


def test_every_junk_address_of_the_simulator_is_still_caught_and_its_real_ones_pass() -> None:
    policy = parse_policy(irs_ice_policy(), "sim.toml")  # the scenarios' own required fields
    agreement = next(iter(policy.agreements.values()))
    checks = RequiredFields(agreement.identifying_fields, agreement.placeholder_values, agreement.address_forms)
    for index in range(len(JUNK_ADDRESSES) * 20):
        junk = request(subject__address=junk_address(7, index))
        assert any(path.startswith("subject.address.") for path, _ in checks.missing(_decoded(junk)))
        real = request(subject__address=address(7, index))
        assert checks.missing(_decoded(real)) == ()


def _decoded(raw_event: Event) -> Request:
    assert isinstance(raw_event, Request)
    return raw_event
