"""UPS Address Validation (XAV) in the sandbox: indicators, candidates, classification, spec checks."""

from __future__ import annotations

from typing import Any

import pytest
from tests.sandbox.ups.client import UpsApi, assert_ups_error, xav_request

from ml_connector_sandbox.testing import SandboxServer


# -- Address validation ----------------------------------------------------------------------------
def test_xav_valid_address_has_one_candidate_array_and_presence_indicator(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("123 Main St")))["XAVResponse"]
    assert answer["ValidAddressIndicator"] == ""  # a presence flag: test the key, not the value
    assert "AmbiguousAddressIndicator" not in answer and "NoCandidatesIndicator" not in answer
    assert isinstance(answer["Candidate"], list) and len(answer["Candidate"]) == 1
    candidate = answer["Candidate"][0]["AddressKeyFormat"]
    assert candidate["AddressLine"] == ["123 MAIN ST"]
    assert (candidate["PoliticalDivision2"], candidate["PostcodePrimaryLow"]) == ("TIMONIUM", "21093")
    assert len(candidate["PostcodeExtendedLow"]) == 4
    assert answer["AddressClassification"] == {"Code": "1", "Description": "Commercial"}


def test_xav_ambiguous_address_has_several_candidates(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("100 AMBIG Ave")))["XAVResponse"]
    assert "AmbiguousAddressIndicator" in answer
    assert len(answer["Candidate"]) >= 2


@pytest.mark.parametrize("request_body", [
    xav_request("1 UNKNOWN Rd"), xav_request("9 Nowhere Blvd"), xav_request("123 Main St", postcode=None),
], ids=["unknown-street", "nowhere-street", "no-postcode"])
def test_xav_no_candidates(api: UpsApi, request_body: dict[str, Any]) -> None:
    answer = api.checked("xav", api.xav(request_body))["XAVResponse"]
    assert "NoCandidatesIndicator" in answer and "Candidate" not in answer
    assert answer["AddressClassification"]["Code"] == "0"


@pytest.mark.parametrize(("line", "name", "code"), [
    ("12 Oak Lane", "Happy Dog Pet Supply", "2"),
    ("12 Main St Apt 4", "Acme Inc", "2"),
    ("5 Court Ct", "Widgets LLC", "2"),
    ("1 Elm St, home office", "Store Co", "2"),
    ("1 Elm St", "Jane Doe", "2"),
    ("1 Elm St", "Acme Corp", "1"),
    ("1 Home Depot Plaza", "Hardware Store", "1"),
])
def test_xav_classification(api: UpsApi, line: str, name: str, code: str) -> None:
    answer = api.checked("xav", api.xav(xav_request(line, name=name), option="2"))["XAVResponse"]
    assert answer["AddressClassification"]["Code"] == code
    assert answer["AddressClassification"]["Description"] == {"1": "Commercial", "2": "Residential"}[code]


def test_xav_option_1_has_no_classification(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("123 Main St"), option="1"))["XAVResponse"]
    assert "AddressClassification" not in answer
    assert "AddressClassification" not in answer["Candidate"][0]


def test_xav_single_object_knob_returns_candidate_as_an_object(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", xav_single_object=True)
    answer = api.xav(xav_request("123 Main St")).json()["XAVResponse"]
    assert isinstance(answer["Candidate"], dict)
    assert answer["Candidate"]["AddressKeyFormat"]["AddressLine"] == "123 MAIN ST"
    ambiguous = api.xav(xav_request("100 AMBIG Ave")).json()["XAVResponse"]
    assert isinstance(ambiguous["Candidate"], list)  # several candidates are still a list


def test_xav_invalid_request_is_rejected_and_recorded(api: UpsApi, ups: SandboxServer) -> None:
    body = xav_request("123 Main St")
    del body["XAVRequest"]["AddressKeyFormat"]["CountryCode"]
    error = assert_ups_error(api.xav(body), 400, "120100")
    assert "CountryCode" in error["message"]
    assert ups.validation_errors("ups")[0]["operation"] == "POST /api/addressvalidation/v2/3"
