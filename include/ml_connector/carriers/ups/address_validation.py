"""UPS Address Validation - Street Level (AddressValidation.yaml, ``/addressvalidation/v2/{requestoption}``):
Address -> XAVRequest, XAVResponse -> AddressValidation.

``#/c/s/X`` abbreviates ``#/components/schemas/X``; "trap N" is section 9 of ``docs/vendors/ups.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_connector.carriers.ups.codes import ADDRESS_CLASSIFICATIONS
from ml_connector.carriers.ups.normalise import (
    alert_messages,
    as_list,
    first,
    get_path,
    has_indicator,
    split_us_postal_code,
    strip_str,
)
from ml_connector.errors import InvalidAddress
from ml_connector.models import (
    Address,
    AddressCandidate,
    AddressClassification,
    AddressStatus,
    AddressValidation,
)

CONSIGNEE_NAME_MAX = 40  # #/c/s/XAVRequest_AddressKeyFormat/properties/ConsigneeName
ADDRESS_LINES_MAX = 3  # #/c/s/XAVRequest_AddressKeyFormat/properties/AddressLine "maximum: 3" occurrences
ADDRESS_LINE_MAX = 100
DIVISION_MAX = 30  # PoliticalDivision1/2
POSTCODE_MAX = 10  # PostcodePrimaryLow


def build_xav_request(address: Address, *, record: str | None = None) -> dict[str, Any]:
    """Build the ``{"XAVRequest": ...}`` body for one address (AddressValidation.yaml XAVRequestWrapper).

    ``Region`` is never sent: when present UPS ignores city, state and postal codes (#/c/s/XAVRequest_AddressKeyFormat
    /properties/Region; the spec's own example sends it, trap 2).

    :param address: the address to check (street level works for US and PR only).
    :param record: the ERP document number, for error messages.
    :raises InvalidAddress: the address has more lines, or longer values, than the service accepts.
    """
    def check(field: str, value: str, limit: int) -> str:
        if len(value) > limit:
            raise InvalidAddress(f"address {field} {value!r} is {len(value)} characters; UPS Address Validation "
                                 f"accepts at most {limit}", record=record, field=field)
        return value

    if len(address.lines) > ADDRESS_LINES_MAX:
        raise InvalidAddress(f"address has {len(address.lines)} street lines; UPS accepts at most "
                             f"{ADDRESS_LINES_MAX}", record=record, field="lines")
    key_format: dict[str, Any] = {}
    if address.name.strip():
        # Informational only (ignored with RegionalRequestIndicator); cutting it changes no match.
        key_format["ConsigneeName"] = address.name.strip()[:CONSIGNEE_NAME_MAX]
    key_format["AddressLine"] = [check("line", line, ADDRESS_LINE_MAX) for line in address.lines]
    key_format["PoliticalDivision2"] = check("city", address.city.strip(), DIVISION_MAX)
    if address.state and address.state.strip():
        key_format["PoliticalDivision1"] = check("state", address.state.strip().upper(), DIVISION_MAX)
    postal_code = (address.postal_code or "").strip()
    if postal_code:
        parts = split_us_postal_code(postal_code) if address.country in ("US", "PR") else None
        if parts is not None:
            key_format["PostcodePrimaryLow"] = parts[0]
            if parts[1]:
                key_format["PostcodeExtendedLow"] = parts[1]  # "4 digit Postal Code extension. For US use only."
        else:
            key_format["PostcodePrimaryLow"] = check("postal_code", postal_code, POSTCODE_MAX)
    key_format["CountryCode"] = address.country
    return {"XAVRequest": {"AddressKeyFormat": key_format}}


def _classification(obj: Any) -> AddressClassification | None:
    code = strip_str(get_path(obj, "AddressClassification", "Code"))
    return ADDRESS_CLASSIFICATIONS.get(code) if code is not None else None


def _candidate(candidate: Mapping[str, Any]) -> AddressCandidate | None:
    key_format = first(candidate.get("AddressKeyFormat"))
    if not isinstance(key_format, Mapping):
        return None
    # AddressLine arrives as a string when there is one line (trap 1, api-documentation issue 58).
    lines = [text for text in (strip_str(line) for line in as_list(key_format.get("AddressLine"))) if text]
    return AddressCandidate(
        lines=lines,
        city=strip_str(key_format.get("PoliticalDivision2")),
        state=strip_str(key_format.get("PoliticalDivision1")),
        postal_code=strip_str(key_format.get("PostcodePrimaryLow")),
        postal_code_extension=strip_str(key_format.get("PostcodeExtendedLow")),
        country=(strip_str(key_format.get("CountryCode")) or "").upper(),
        classification=_classification(candidate) or AddressClassification.UNCLASSIFIED,
    )


def parse_xav_response(body: Mapping[str, Any]) -> AddressValidation:
    """Read an XAVResponse (AddressValidation.yaml XAVResponseWrapper) into an :class:`AddressValidation`.

    The outcome is given by which indicator key is present (their value is ``""``, trap 5); Candidate and
    Alert are read as object-or-array (v1 sends a single object, trap 1).

    :param body: the decoded 200 body.
    """
    response = first(body.get("XAVResponse")) if isinstance(body, Mapping) else None
    response = response if isinstance(response, Mapping) else {}
    messages = alert_messages(get_path(response, "Response", "Alert"))
    candidates_raw = [c for c in as_list(response.get("Candidate")) if isinstance(c, Mapping)]
    candidates = [c for c in (_candidate(raw) for raw in candidates_raw) if c is not None]

    if has_indicator(response, "ValidAddressIndicator"):
        status = AddressStatus.VALID
    elif has_indicator(response, "AmbiguousAddressIndicator"):
        status = AddressStatus.AMBIGUOUS
    elif has_indicator(response, "NoCandidatesIndicator"):
        status = AddressStatus.NO_CANDIDATES
    else:
        # Request option 2 (classification only) sends no indicator: say so rather than guess "valid".
        status = AddressStatus.AMBIGUOUS if candidates else AddressStatus.NO_CANDIDATES
        messages.append("UPS returned no address validation indicator")

    classification = _classification(response)
    if classification is None and candidates_raw:
        classification = _classification(candidates_raw[0])
    return AddressValidation(
        status=status,
        classification=classification or AddressClassification.UNCLASSIFIED,
        candidates=candidates,
        messages=messages,
    )
