"""UPS Address Validation (XAV, street level): ``POST /api/addressvalidation/{version}/{requestoption}``.

The answer follows deterministic rules on the address text.

Rules (documented for test authors; the real CIE only answers for NY and CA addresses):

- ``NoCandidatesIndicator`` when the postcode is missing or the street contains ``UNKNOWN``/``NOWHERE``;
- ``AmbiguousAddressIndicator`` with two candidates when the street contains ``AMBIG``, and with one
  candidate when the postcode is there but the city is not;
- ``ValidAddressIndicator`` with one candidate (the address upper-cased, ZIP+4 added) otherwise.
- Classification (request option 2 or 3): residential ("2") when the street has the word Apt, Lane, Ln,
  Ct or Residence, or a lowercase "home", or when ``ConsigneeName`` looks like a person (no Inc, LLC,
  Corp, Co, Ltd, Supply, Store); otherwise commercial ("1"); "0" when there are no candidates.

Indicators are presence flags whose value is ``""``: clients must test the key, not its value.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import ups_error
from ml_connector_sandbox.ups.state import UpsState
from ml_connector_sandbox.ups.validation import json_body, reject_invalid, validator

SUCCESS = {"ResponseStatus": {"Code": "1", "Description": "Success"}}
UNCLASSIFIED = {"Code": "0", "Description": "UnClassified"}
COMMERCIAL = {"Code": "1", "Description": "Commercial"}
RESIDENTIAL = {"Code": "2", "Description": "Residential"}

_NO_CANDIDATE_WORDS = ("UNKNOWN", "NOWHERE")
_RESIDENTIAL_WORDS = re.compile(r"\b(apt|lane|ln|ct|residence)\b", re.IGNORECASE)
_BUSINESS_WORDS = re.compile(r"\b(inc|llc|corp|co|ltd|supply|store)\b", re.IGNORECASE)
_REGION = re.compile(r"^(?P<city>.+?)[,\s]+(?P<state>[A-Za-z]{2})\s+(?P<zip>\d{5})(?:-(?P<ext>\d{4}))?\s*$")
_HOUSE_NUMBER = re.compile(r"^(\d+\S*)\s+(.*)$")


def _address_lines(key_format: dict[str, Any]) -> list[str]:
    """AddressLine as a list (the schema says array; be lenient for the rules)."""
    lines = key_format.get("AddressLine") or []
    return [lines] if isinstance(lines, str) else [str(line) for line in lines]


def _place(key_format: dict[str, Any]) -> dict[str, str]:
    """City, state, ZIP and ZIP+4 of the input; ``Region`` overrides the separate fields, as at UPS."""
    region = (key_format.get("Region") or "").strip()
    if region:
        match = _REGION.match(region)
        if not match:
            return {"city": "", "state": "", "zip": "", "ext": ""}
        return {"city": match["city"], "state": match["state"], "zip": match["zip"], "ext": match["ext"] or ""}
    postcode = (key_format.get("PostcodePrimaryLow") or "").strip()
    zip5, _, ext = postcode.partition("-")
    return {
        "city": (key_format.get("PoliticalDivision2") or "").strip(),
        "state": (key_format.get("PoliticalDivision1") or "").strip(),
        "zip": zip5,
        "ext": ext or (key_format.get("PostcodeExtendedLow") or "").strip(),
    }


def looks_like_person(name: str) -> bool:
    """A consignee name without a business word (Inc, LLC, Corp, Co, Ltd, Supply, Store)."""
    return bool(name.strip()) and not _BUSINESS_WORDS.search(name)


def classify(key_format: dict[str, Any]) -> dict[str, str]:
    """Residential or commercial, by the rules in the module docstring."""
    street = " ".join(_address_lines(key_format))
    if _RESIDENTIAL_WORDS.search(street) or "home" in street:
        return dict(RESIDENTIAL)
    if looks_like_person(key_format.get("ConsigneeName") or ""):
        return dict(RESIDENTIAL)
    return dict(COMMERCIAL)


def _zip4(street: str) -> str:
    """A stable made-up ZIP+4 for a street."""
    return f"{zlib.crc32(street.upper().encode()) % 10000:04d}"


def _candidate_key_format(lines: list[str], place: dict[str, str], country: str) -> dict[str, Any]:
    """A candidate's AddressKeyFormat, normalised the way UPS answers (upper case, ZIP+4, Region)."""
    upper_lines = [line.upper() for line in lines] or ["UNNUMBERED"]
    ext = place["ext"] or _zip4(" ".join(upper_lines))
    key_format: dict[str, Any] = {"AddressLine": upper_lines}
    city, state = place["city"].upper(), place["state"].upper()
    region = " ".join(part for part in (city, state, f"{place['zip']}-{ext}") if part)
    key_format["Region"] = region
    if city:
        key_format["PoliticalDivision2"] = city
    if state:
        key_format["PoliticalDivision1"] = state
    key_format.update({"PostcodePrimaryLow": place["zip"], "PostcodeExtendedLow": ext, "CountryCode": country})
    return key_format


def _ambiguous_variants(lines: list[str]) -> list[list[str]]:
    """Two plausible readings of an ambiguous street: north and south of the same number."""
    first, rest = (lines[0] if lines else ""), lines[1:]
    match = _HOUSE_NUMBER.match(first)
    number, street = (match[1], match[2]) if match else ("", first)
    variants = []
    for direction in ("N", "S"):
        line = " ".join(part for part in (number, direction, street) if part)
        variants.append([line, *rest])
    return variants


def _outcome(key_format: dict[str, Any], place: dict[str, str]) -> tuple[str, list[list[str]]]:
    """Which indicator applies and the candidate street lines."""
    lines = _address_lines(key_format)
    street = " ".join(lines).upper()
    if not place["zip"] or any(word in street for word in _NO_CANDIDATE_WORDS):
        return "NoCandidatesIndicator", []
    if "AMBIG" in street:
        return "AmbiguousAddressIndicator", _ambiguous_variants(lines)
    if not place["city"]:
        return "AmbiguousAddressIndicator", [lines]
    return "ValidAddressIndicator", [lines]


def _as_object_if_single(items: list[Any]) -> Any:
    """UPS's object-if-single habit (v1 always, v2 when the ``xav_single_object`` knob is on)."""
    return items[0] if len(items) == 1 else items


def xav_response(key_format: dict[str, Any], request_option: str, *, max_candidates: int = 15,
                 single_object: bool = False) -> dict[str, Any]:
    """Build the ``{"XAVResponse": ...}`` answer for one address.

    :param key_format: the request's ``XAVRequest.AddressKeyFormat`` (already schema-valid).
    :param request_option: "1" validation, "2" classification, "3" both.
    :param max_candidates: the ``maximumcandidatelistsize`` query parameter (0-50).
    :param single_object: return a single Candidate (and its AddressLine) as an object, not a list.
    """
    place = _place(key_format)
    country = key_format.get("CountryCode", "US")
    indicator, variants = _outcome(key_format, place)
    with_classification = request_option in ("2", "3")
    classification = classify(key_format) if variants else dict(UNCLASSIFIED)

    candidates = []
    for lines in variants[: max(max_candidates, 0)]:
        candidate: dict[str, Any] = {}
        if with_classification:
            candidate["AddressClassification"] = dict(classification)
        candidate["AddressKeyFormat"] = _candidate_key_format(lines, place, country)
        candidates.append(candidate)

    response: dict[str, Any] = {"Response": {**SUCCESS}, indicator: ""}
    if with_classification:
        response["AddressClassification"] = classification
    if candidates:
        if single_object:
            for candidate in candidates:
                candidate["AddressKeyFormat"]["AddressLine"] = _as_object_if_single(
                    candidate["AddressKeyFormat"]["AddressLine"])
            response["Candidate"] = _as_object_if_single(candidates)
        else:
            response["Candidate"] = candidates
    return {"XAVResponse": response}


def router(state: UpsState) -> APIRouter:
    """``POST /addressvalidation/{version}/{requestoption}`` (mounted under ``/api``)."""
    api = APIRouter(tags=["Address Validation"])

    @api.post("/addressvalidation/{version}/{requestoption}")
    async def address_validation(version: str, requestoption: str, request: Request) -> JSONResponse:
        state.increment("xav_requests")
        if version not in ("v1", "v2"):
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2")
        if requestoption not in ("1", "2", "3"):
            raise ups_error(400, codes.SCHEMA_INVALID, f"Invalid requestoption {requestoption!r}: use 1, 2 or 3")
        body = await json_body(state, request)
        errors = validator("AddressValidation.yaml").request_errors(
            "/addressvalidation/{version}/{requestoption}", "post", body)
        reject_invalid(state, request, errors)
        raw_size = request.query_params.get("maximumcandidatelistsize", "15")
        if not raw_size.isdigit() or int(raw_size) > 50:
            raise ups_error(400, codes.SCHEMA_INVALID, "maximumcandidatelistsize must be 0-50")
        # v1 is object-if-single by contract; v2 only when the knob asks for UPS's real-world habit.
        single = version == "v1" or state.knob("xav_single_object")
        return JSONResponse(xav_response(body["XAVRequest"]["AddressKeyFormat"], requestoption,
                                         max_candidates=int(raw_size), single_object=single))

    return api
