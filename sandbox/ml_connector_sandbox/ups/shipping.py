"""UPS Ship and Void: ``POST /api/shipments/{version}/ship`` and ``DELETE /api/shipments/{version}/void/cancel/{id}``.

Business rules the schema cannot express, labels, answers. The request has already passed Shipping.yaml
schema validation when the rule functions run; a Ship call refused by a rule is recorded too
(``GET /_sandbox/validation_errors``, ``kind`` "rule").
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.common import DropConnection, VendorError
from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import (
    BILL_SHIPPER_MISMATCH,
    INTERNAL_ERROR,
    INTERNATIONAL_FORMS_INVALID,
    INTERNATIONAL_FORMS_MISSING,
    PACKAGE_REFERENCE_NOT_ALLOWED,
    SCHEMA_INVALID,
    SERVICE_INVALID,
    SHIPMENT_REFERENCE_NOT_ALLOWED,
    VOID_NOT_FOUND,
    ups_error,
    ups_error_from,
)
from ml_connector_sandbox.ups.state import StoredPackage, StoredShipment, TrackEvent, UpsState
from ml_connector_sandbox.ups.validation import json_body, operation, reject_invalid, validator

#: Service codes and names, from Shipping.yaml #/components/schemas/Shipment_Service/properties/Code.
SERVICES: dict[str, str] = {
    "01": "Next Day Air", "02": "2nd Day Air", "03": "Ground", "07": "Express", "08": "Expedited",
    "11": "UPS Standard", "12": "3 Day Select", "13": "Next Day Air Saver", "14": "UPS Next Day Air Early",
    "17": "UPS Worldwide Economy DDU", "54": "Express Plus", "59": "2nd Day Air A.M.", "65": "UPS Saver",
    "M2": "First Class Mail", "M3": "Priority Mail", "M4": "Expedited Mail Innovations",
    "M5": "Priority Mail Innovations", "M6": "Economy Mail Innovations", "M7": "Mail Innovations Returns",
    "70": "UPS Access Point Economy", "71": "UPS Worldwide Express Freight Midday",
    "72": "UPS Worldwide Economy DDP", "74": "UPS Express 12:00", "75": "UPS Heavy Goods",
    "82": "UPS Today Standard", "83": "UPS Today Dedicated Courier", "84": "UPS Today Intercity",
    "85": "UPS Today Express", "86": "UPS Today Express Saver", "96": "UPS Worldwide Express Freight",
    "C6": "Roadie XD AM", "C7": "Roadie XD PM", "C8": "Roadie XD", "T0": "Master", "T1": "LTL",
}
#: Label formats a Ship request may ask for (Shipping.yaml LabelSpecification_LabelImageFormat/Code).
LABEL_FORMATS = ("GIF", "ZPL", "EPL", "SPL")
#: Ship versions in Shipping.yaml ({version} and {deprecatedVersion}), plus v2403 named in its notes.
SHIP_VERSIONS = frozenset({"v2409", "v2403", "v2205", "v2108", "v1807", "v1801", "v1707", "v1701",
                           "v1607", "v1601", "v1"})
#: Void versions: v2409, v3 (Roadie) and the deprecated ones.
VOID_VERSIONS = SHIP_VERSIONS | {"v3"}
#: Made-up published rate per package; negotiated rates are 10% lower.
RATE_PER_PACKAGE = 12.34
NEGOTIATED_DISCOUNT = 0.9

# 1x1 white GIF89a: a valid image that any decoder (and PIL) opens, small enough to keep answers light.
TINY_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


# -- versions ------------------------------------------------------------------------------------
def version_number(version: str) -> int:
    """``"v2409"`` -> 2409; ``"v1"`` -> 1 (older than every YYMM version)."""
    return int(version[1:]) if version[1:].isdigit() else 0


def always_arrays(version: str) -> bool:
    """Shipping.yaml: from v2403 on, PackageResults & co are always arrays; before, object-if-single."""
    return version_number(version) >= 2403


# -- tracking numbers ------------------------------------------------------------------------------
def ups_check_digit(body: str) -> str:
    """The 1Z check digit of the 15 characters after ``1Z`` (letters count as (ord - 63) mod 10)."""
    total = 0
    for position, char in enumerate(body):
        value = int(char) if char.isdigit() else (ord(char.upper()) - 63) % 10
        total += value * 2 if position % 2 else value
    return str((10 - total % 10) % 10)


def tracking_number(shipper_number: str, service_code: str, serial: int) -> str:
    """A valid-looking 18-character 1Z number: shipper, service, 7-digit serial, check digit."""
    body = f"{shipper_number.upper():0>6.6}{service_code.upper():0>2.2}{serial % 10**7:07d}"
    return f"1Z{body}{ups_check_digit(body)}"


# -- business rules --------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    """None -> [], object -> [object], list -> list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def origin_address(shipment: dict[str, Any]) -> dict[str, Any]:
    """Where the package leaves from: ShipFrom when given, else the Shipper's address."""
    return (shipment.get("ShipFrom") or shipment["Shipper"])["Address"]


def is_us_or_pr_domestic(shipment: dict[str, Any]) -> bool:
    """True for US->US and PR->PR, the pairs where UPS swaps which reference level is allowed."""
    pair = (origin_address(shipment).get("CountryCode", "").upper(),
            shipment["ShipTo"]["Address"].get("CountryCode", "").upper())
    return pair in {("US", "US"), ("PR", "PR")}


def _check_service(shipment: dict[str, Any]) -> None:
    """Service.Code must be one of the codes Shipping.yaml lists."""
    if shipment["Service"]["Code"].upper() not in SERVICES:
        raise ups_error_from(400, SERVICE_INVALID)


def _check_bill_shipper(shipment: dict[str, Any]) -> None:
    """BillShipper.AccountNumber "must be the same as the shipper number" (Shipping.yaml)."""
    shipper_number = shipment["Shipper"]["ShipperNumber"].upper()
    charges = _as_list((shipment.get("PaymentInformation") or {}).get("ShipmentCharge"))
    for charge in charges:
        account = ((charge or {}).get("BillShipper") or {}).get("AccountNumber")
        if account is not None and account.upper() != shipper_number:
            raise ups_error_from(400, BILL_SHIPPER_MISMATCH)


def _check_reference_placement(shipment: dict[str, Any]) -> None:
    """Shipment-level references only off US/US & PR/PR; package-level ones only on them."""
    domestic = is_us_or_pr_domestic(shipment)
    if domestic and shipment.get("ReferenceNumber"):
        raise ups_error_from(400, SHIPMENT_REFERENCE_NOT_ALLOWED)
    if not domestic and any(package.get("ReferenceNumber") for package in shipment["Package"]):
        raise ups_error_from(400, PACKAGE_REFERENCE_NOT_ALLOWED)


#: The EU customs union (goods move between its members without customs formalities).
EU_CUSTOMS_UNION = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
    "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})


def _customs_area(country: str) -> str:
    country = country.upper()
    return "EU" if country in EU_CUSTOMS_UNION else "US" if country in {"US", "PR"} else country


def _check_international_forms(shipment: dict[str, Any]) -> None:
    """Goods leaving the customs area (EU -> outside, US -> outside) need a commercial invoice, and an Invoice
    form needs the elements Shipping.yaml calls "Required for Invoice forms"."""
    origin = origin_address(shipment).get("CountryCode", "")
    destination = shipment["ShipTo"]["Address"].get("CountryCode", "")
    forms = (shipment.get("ShipmentServiceOptions") or {}).get("InternationalForms")
    leaves = _customs_area(origin) != _customs_area(destination) and "DocumentsOnlyIndicator" not in shipment
    if leaves and (not forms or "01" not in _as_list(forms.get("FormType"))):
        raise ups_error_from(400, INTERNATIONAL_FORMS_MISSING)
    if not forms or "01" not in _as_list(forms.get("FormType")):
        return
    path = "$.ShipmentRequest.Shipment.ShipmentServiceOptions.InternationalForms"
    for name in ("InvoiceNumber", "InvoiceDate", "ReasonForExport", "CurrencyCode"):
        if not forms.get(name):
            raise ups_error(400, INTERNATIONAL_FORMS_INVALID, f"{path}.{name} is required for Invoice forms")
    if not (forms.get("Contacts") or {}).get("SoldTo"):
        raise ups_error(400, INTERNATIONAL_FORMS_INVALID, f"{path}.Contacts.SoldTo is required for Invoice forms")
    for index, product in enumerate(_as_list(forms.get("Product"))):
        for name in ("Unit", "OriginCountryCode"):
            if not product.get(name):
                raise ups_error(400, INTERNATIONAL_FORMS_INVALID,
                                f"{path}.Product[{index}].{name} is required for Invoice forms")
        try:
            value = float(product["Unit"]["Value"])
        except (KeyError, TypeError, ValueError):
            value = 0.0
        if value <= 0:  # "Amount should be greater than zero" (#/c/s/Product_Unit/properties/Value)
            raise ups_error(400, INTERNATIONAL_FORMS_INVALID,
                            f"{path}.Product[{index}].Unit.Value must be greater than zero")


def label_format(request: dict[str, Any]) -> str:
    """The requested label format (GIF when no LabelSpecification is sent)."""
    spec = request["ShipmentRequest"].get("LabelSpecification") or {}
    return (spec.get("LabelImageFormat") or {}).get("Code", "GIF").upper()


def _check_label_format(request: dict[str, Any]) -> None:
    """LabelImageFormat.Code is free text in the schema; its description lists the valid values."""
    code = label_format(request)
    if code not in LABEL_FORMATS:
        raise ups_error(400, SCHEMA_INVALID, f"$.ShipmentRequest.LabelSpecification.LabelImageFormat.Code: "
                        f"{code!r} is not one of {', '.join(LABEL_FORMATS)}")


def check_ship_rules(request: dict[str, Any]) -> None:
    """Raise the UPS 400 for the first business rule a schema-valid Ship request breaks."""
    shipment = request["ShipmentRequest"]["Shipment"]
    _check_service(shipment)
    _check_bill_shipper(shipment)
    _check_reference_placement(shipment)
    _check_international_forms(shipment)
    _check_label_format(request)


# -- creating the shipment -------------------------------------------------------------------------
def _reference_values(items: Any) -> list[str]:
    """The Value of every ReferenceNumber item, in order, without duplicates."""
    values: list[str] = []
    for item in _as_list(items):
        value = str((item or {}).get("Value", "")).strip()
        if value and value not in values:
            values.append(value)
    return values


def build_shipment(request: dict[str, Any], *, next_serial: Callable[[], int], now: datetime) -> StoredShipment:
    """Turn a valid Ship request into the stored shipment (one label per package)."""
    shipment = request["ShipmentRequest"]["Shipment"]
    shipper_number = shipment["Shipper"]["ShipperNumber"].upper()
    service_code = shipment["Service"]["Code"].upper()
    packages = []
    for package in shipment["Package"]:
        weight = package.get("PackageWeight") or {}
        packages.append(StoredPackage(
            tracking_number=tracking_number(shipper_number, service_code, next_serial()),
            references=_reference_values(package.get("ReferenceNumber")),
            weight=str(weight.get("Weight", "0")),
            weight_unit=((weight.get("UnitOfMeasurement") or {}).get("Code") or "LBS").upper(),
            events=[TrackEvent("MP", now)],
        ))
    return StoredShipment(
        shipment_id=packages[0].tracking_number,
        shipper_number=shipper_number,
        service_code=service_code,
        origin=origin_address(shipment),
        ship_to=shipment["ShipTo"],
        references=_reference_values(shipment.get("ReferenceNumber")),
        packages=packages,
        created_at=now,
        label_format=label_format(request),
    )


# -- labels ----------------------------------------------------------------------------------------
def _zpl_label(shipment: StoredShipment, package: StoredPackage) -> str:
    """A small ZPL II label: service, ship-to, a Code 128 barcode of the 1Z and the references."""
    address = shipment.ship_to.get("Address", {})
    place = " ".join(filter(None, [address.get("City"), address.get("StateProvinceCode"),
                                   address.get("PostalCode"), address.get("CountryCode")]))
    references = ", ".join(shipment.package_references(package))
    return (
        "^XA\n"
        f"^FO40,40^A0N,40,40^FDUPS {SERVICES[shipment.service_code].upper()}^FS\n"
        f"^FO40,100^A0N,30,30^FDSHIP TO: {shipment.ship_to.get('Name', '')}^FS\n"
        f"^FO40,140^A0N,30,30^FD{place}^FS\n"
        f"^FO40,200^BCN,120,Y,N,N^FD{package.tracking_number}^FS\n"
        f"^FO40,380^A0N,24,24^FDREF: {references}^FS\n"
        "^XZ\n"
    )


def label_image(shipment: StoredShipment, package: StoredPackage) -> str:
    """Base64 GraphicImage: a tiny GIF for GIF labels, printer text for ZPL/EPL/SPL."""
    if shipment.label_format == "GIF":
        return base64.b64encode(TINY_GIF).decode()
    return base64.b64encode(_zpl_label(shipment, package).encode()).decode()


def _shipping_label(shipment: StoredShipment, package: StoredPackage) -> dict[str, Any]:
    """PackageResults.ShippingLabel (HTMLImage only for GIF, as UPS does)."""
    label: dict[str, Any] = {
        "ImageFormat": {"Code": shipment.label_format, "Description": shipment.label_format},
        "GraphicImage": label_image(shipment, package),
    }
    if shipment.label_format == "GIF":
        html = f'<html><body><img src="label{package.tracking_number}.gif"></body></html>'
        label["HTMLImage"] = base64.b64encode(html.encode()).decode()
    return label


# -- the answer ------------------------------------------------------------------------------------
def _money(amount: float) -> dict[str, str]:
    """UPS money: currency and value as strings."""
    return {"CurrencyCode": "USD", "MonetaryValue": f"{amount:.2f}"}


def _billing_weight(shipment: StoredShipment) -> dict[str, Any]:
    """Sum of package weights in LBS/KGS, rounded up to a whole unit.

    Shipping.yaml types BillingWeight.Weight as exactly 8 characters (minLength = maxLength = 8), so
    the sandbox zero-pads ("000005.0"); the real API answers "5.0". Parse it as a number.
    """
    unit = shipment.packages[0].weight_unit
    total = 0.0
    for package in shipment.packages:
        value = float(package.weight or 0)
        total += value / 16 if package.weight_unit == "OZS" else value
    unit = "KGS" if unit == "KGS" else "LBS"
    return {"UnitOfMeasurement": {"Code": unit, "Description": "Kilograms" if unit == "KGS" else "Pounds"},
            "Weight": f"{math.ceil(total):08.1f}"[-8:]}


def ship_response(shipment: StoredShipment, request: dict[str, Any], *, version: str,
                  package_results_single_object: bool = False) -> dict[str, Any]:
    """The ``{"ShipmentResponse": ...}`` answer for a created shipment."""
    shipment_request = request["ShipmentRequest"]
    total = RATE_PER_PACKAGE * len(shipment.packages)
    results: dict[str, Any] = {
        "ShipmentCharges": {"TransportationCharges": _money(total), "ServiceOptionsCharges": _money(0),
                            "TotalCharges": _money(total)},
        "BillingWeight": _billing_weight(shipment),
        "ShipmentIdentificationNumber": shipment.shipment_id,
    }
    rating_options = shipment_request["Shipment"].get("ShipmentRatingOptions") or {}
    if "NegotiatedRatesIndicator" in rating_options:  # a presence flag: its value is ignored
        results["NegotiatedRateCharges"] = {"TotalCharge": _money(total * NEGOTIATED_DISCOUNT)}
    package_results = [
        {"TrackingNumber": package.tracking_number, "ServiceOptionsCharges": _money(0),
         "ShippingLabel": _shipping_label(shipment, package)}
        for package in shipment.packages
    ]
    single = package_results_single_object or not always_arrays(version)
    results["PackageResults"] = package_results[0] if single and len(package_results) == 1 else package_results

    response: dict[str, Any] = {"ResponseStatus": {"Code": "1", "Description": "Success"}}
    context = ((shipment_request.get("Request") or {}).get("TransactionReference") or {}).get("CustomerContext")
    if context:
        response["TransactionReference"] = {"CustomerContext": context}
    return {"ShipmentResponse": {"Response": response, "ShipmentResults": results}}


# -- void ------------------------------------------------------------------------------------------
def parse_tracking_numbers(raw: str | None) -> list[str]:
    """The void ``trackingnumber`` query: one 1Z, or ``["1Z...","1Z..."]`` (up to 20)."""
    if not raw:
        return []
    cleaned = raw.strip().strip("[]")
    return [part.strip().strip('"').strip("'").strip() for part in cleaned.split(",") if part.strip()]


def void_shipment(state: UpsState, shipment_id: str, raw_tracking_numbers: str | None) -> dict[str, Any]:
    """Void a whole shipment, or the listed packages of it; voiding twice succeeds again.

    :raises VendorError: 400 code 190102 for an unknown shipment or a number not in it.
    """
    numbers = parse_tracking_numbers(raw_tracking_numbers)
    with state.lock:
        shipment = state.shipments.get(shipment_id.strip())
        if shipment is None:
            raise ups_error_from(400, VOID_NOT_FOUND)
        by_number = {package.tracking_number: package for package in shipment.packages}
        if any(number not in by_number for number in numbers):
            raise ups_error_from(400, VOID_NOT_FOUND)
        now = state.now()
        for package in [by_number[number] for number in numbers] or shipment.packages:
            if not package.voided:
                package.voided = True
                package.events.append(TrackEvent("MV", max(now, package.events[-1].at)))
        state.counters["voids"] += 1
    answer: dict[str, Any] = {
        "Response": {"ResponseStatus": {"Code": "1", "Description": "Success"}},
        "SummaryResult": {"Status": {"Code": "1", "Description": "Voided"}},
    }
    if numbers:
        answer["PackageLevelResults"] = [
            {"TrackingNumber": number, "Status": {"Code": "1", "Description": "Voided"}} for number in numbers
        ]
    return {"VoidShipmentResponse": answer}



# -- routes ----------------------------------------------------------------------------------------
def router(state: UpsState) -> APIRouter:
    """``POST /shipments/{version}/ship`` and the void ``DELETE`` (mounted under ``/api``)."""
    api = APIRouter(tags=["Shipping"])

    @api.post("/shipments/{version}/ship")
    async def ship(version: str, request: Request) -> JSONResponse:
        state.increment("ship_requests")
        if version not in SHIP_VERSIONS:
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2409")
        body = await json_body(state, request)
        reject_invalid(state, request, validator("Shipping.yaml").request_errors(
            "/shipments/{version}/ship", "post", body))
        try:
            check_ship_rules(body)
        except VendorError as exc:
            # Recorded too: an end-to-end test can assert the connector never sent a request UPS refuses.
            error = exc.body["response"]["errors"][0]
            state.record_validation_error(operation(request), [f"{error['code']} {error['message']}"], kind="rule")
            raise
        with state.lock:
            shipment = build_shipment(body, next_serial=state.next_serial, now=state.now())
            state.store_shipment(shipment)
            crash = state.take_one("crash_after_label_next")
            fail = not crash and state.take_one("error_after_label_next")
            delay_ms = state.knobs["ship_answer_delay_ms"]
            single = state.knobs["package_results_single_object"]
        # Fault knobs: the label exists (counted, trackable by reference) but the client never learns it.
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)  # a client whose read timeout is shorter has given up
        if crash:
            raise DropConnection
        if fail:
            state.increment("ship_errors_after_label")
            raise ups_error_from(500, INTERNAL_ERROR)
        return JSONResponse(ship_response(shipment, body, version=version, package_results_single_object=single))

    @api.delete("/shipments/{version}/void/cancel/{shipment_id}")
    def void(version: str, shipment_id: str, request: Request) -> JSONResponse:
        if version not in VOID_VERSIONS:
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2409")
        return JSONResponse(void_shipment(state, shipment_id, request.query_params.get("trackingnumber")))

    return api
