"""UPS Shipping API (Shipping.yaml, ``/shipments/v2409/ship`` and ``/void/cancel``): Order -> ShipmentRequest,
ShipmentResponse -> ShipmentResult, VoidShipmentResponse -> bool.

Schema pointers are abbreviated ``#/c/s/X`` for ``#/components/schemas/X``; "trap N" is the numbered UPS
API trap in ``docs/vendors/ups.md``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from ml_connector.carriers.ups.codes import LABEL_FORMATS, LABEL_STOCK_HEIGHTS, SERVICE_CODES
from ml_connector.carriers.ups.normalise import (
    alert_messages,
    as_list,
    first,
    format_dimension,
    format_weight,
    get_path,
    money,
    split_us_postal_code,
    strip_str,
)
from ml_connector.carriers.ups.rules import (
    DEFAULT_PACKAGING_CODE,
    POSTAL_CODE_REQUIRED,
    STATE_REQUIRED,
    check_customs_lines,
    check_reason_for_export,
    check_reference,
    check_shipper_number,
    needs_commercial_invoice,
)
from ml_connector.errors import (
    AmbiguousRequestError,
    ConfigurationError,
    MissingWeight,
    RecordError,
)
from ml_connector.models import Address, Label, Order, Package, ShipmentResult

NAME_MAX = 35  # #/c/s/Shipment_ShipTo/properties/Name (and Shipper, ShipFrom, AttentionName)
ADDRESS_LINE_MAX = 35  # #/c/s/ShipTo_Address/properties/AddressLine "Up to three occurrences", 35 each
ADDRESS_LINES_MAX = 3
CITY_MAX = 30  # #/c/s/ShipTo_Address/properties/City
STATE_MAX = 5  # #/c/s/ShipTo_Address/properties/StateProvinceCode
POSTAL_CODE_MAX = 9  # #/c/s/ShipTo_Address/properties/PostalCode
PHONE_MAX = 15  # #/c/s/ShipTo_Phone/properties/Number
PACKAGES_MAX = 200  # #/c/s/ShipmentRequest_Shipment/properties/Package "maximum: 200"
DESCRIPTION_MAX = 50  # #/c/s/ShipmentRequest_Shipment/properties/Description
PACKAGE_DESCRIPTION_MAX = 35  # #/c/s/Shipment_Package/properties/Description
CUSTOMER_CONTEXT_MAX = 512  # #/c/s/Request_TransactionReference/properties/CustomerContext
REQUEST_OPTIONS = frozenset({"validate", "nonvalidate"})  # #/c/s/ShipmentRequest_Request/properties/RequestOption

# Package-level references only for these origin/destination pairs, shipment-level only for the others
# (#/c/s/Shipment_ReferenceNumber, #/c/s/Package_ReferenceNumber; wrong placement = 120541/120542, trap 6).
PACKAGE_REFERENCE_PAIRS = frozenset({("US", "US"), ("PR", "PR")})
US_POSTAL = frozenset({"US", "PR"})  # "5 or 9 digits" (#/c/s/ShipTo_Address/properties/PostalCode)
NANP = frozenset({"US", "CA", "PR", "VI"})  # 10-digit phone layout (#/c/s/ShipTo_Phone/properties/Number)

_REFERENCE_CODE = re.compile(r"^[A-Za-z0-9]{2}$")
_PHONE_EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?|extension)\s*(\d{1,4})\s*$")


class _Party:
    """Builds one Shipper/ShipTo/ShipFrom block; knows whom to blame when a value does not fit."""

    def __init__(self, role: str, address: Address, record: str) -> None:
        self.role, self.address, self.record = role, address, record

    def fail(self, field: str, message: str) -> Exception:
        # ShipTo comes from the ERP document (quarantine that record); Shipper/ShipFrom are pipeline
        # settings (every order would fail the same way, so stop the run and name the setting).
        if self.role == "ship_to":
            return RecordError(f"ship-to {field} {message}", record=self.record, field=f"ship_to.{field}")
        return ConfigurationError(f"{self.role} address setting: {field} {message}")

    def fit(self, field: str, value: str | None, limit: int) -> str | None:
        text = (value or "").strip()
        if len(text) > limit:
            raise self.fail(field, f"{text!r} is {len(text)} characters; UPS accepts at most {limit}. "
                                   "Shorten it at the source.")
        return text or None

    def phone(self) -> dict[str, str] | None:
        raw = (self.address.phone or "").strip()
        extension = None
        match = _PHONE_EXTENSION.search(raw)
        if match:
            extension, raw = match.group(1), raw[: match.start()]
        digits = re.sub(r"\D", "", raw)  # "Valid values are 0 - 9" (#/c/s/Shipper_Phone/properties/Number)
        if not digits:
            return None
        if self.address.country in NANP and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]  # "+1 555 ..." -> area code + 7 digits
        if len(digits) > PHONE_MAX:
            raise self.fail("phone", f"{self.address.phone!r} has {len(digits)} digits; UPS accepts at most "
                                     f"{PHONE_MAX}")
        phone = {"Number": digits}
        if extension:
            phone["Extension"] = extension
        return phone

    def postal_code(self) -> str | None:
        country, raw = self.address.country, (self.address.postal_code or "").strip()
        if not raw:
            if country in POSTAL_CODE_REQUIRED:
                raise self.fail("postal_code", f"is missing; UPS requires one for {country}")
            return None
        if country in US_POSTAL:
            parts = split_us_postal_code(raw)
            if parts is None:
                raise self.fail("postal_code", f"{raw!r} is not a 5- or 9-digit ZIP code")
            return parts[0] + (parts[1] or "")
        return self.fit("postal_code", raw, POSTAL_CODE_MAX)

    def build(self, **extra: str) -> dict[str, Any]:
        address = self.address
        if len(address.lines) > ADDRESS_LINES_MAX:
            raise self.fail("address lines", f"has {len(address.lines)} lines; UPS accepts at most "
                                             f"{ADDRESS_LINES_MAX}. Merge them at the source.")
        lines = [self.fit(f"address line {i}", line, ADDRESS_LINE_MAX) for i, line in enumerate(address.lines, 1)]
        block: dict[str, Any] = {"AddressLine": lines, "City": self.fit("city", address.city, CITY_MAX)}
        if not block["City"]:
            raise self.fail("city", "is missing")
        state = self.fit("state", address.state, STATE_MAX)
        if state:
            block["StateProvinceCode"] = state.upper()
        elif address.country in STATE_REQUIRED:
            raise self.fail("state", f"is missing; UPS requires a state or province code for {address.country}")
        postal_code = self.postal_code()
        if postal_code:
            block["PostalCode"] = postal_code
        block["CountryCode"] = address.country
        party: dict[str, Any] = {"Name": self.fit("name", address.name, NAME_MAX)}
        if not party["Name"]:
            raise self.fail("name", "is missing")
        attention = self.fit("attention", address.attention, NAME_MAX)
        if attention:
            party["AttentionName"] = attention
        party.update(extra)
        phone = self.phone()
        if phone:
            party["Phone"] = phone
        party["Address"] = block
        return party


def _reference_entry(reference: str, reference_code: str | None, record: str) -> dict[str, str]:
    entry = {"Value": check_reference(reference, record=record)}
    if reference_code:
        entry["Code"] = reference_code
    return entry


def _package(package: Package, index: int, record: str) -> dict[str, Any]:
    field = f"packages[{index}]"
    code = DEFAULT_PACKAGING_CODE
    block: dict[str, Any] = {}
    if package.description and package.description.strip():
        # Free text shown on the label: cutting it loses nothing that identifies the shipment.
        block["Description"] = package.description.strip()[:PACKAGE_DESCRIPTION_MAX]
    block["Packaging"] = {"Code": code}
    if package.dimensions is not None:
        dims = package.dimensions
        # "Length must be the longest dimension of the container" (#/c/s/Package_Dimensions/properties/Length).
        length, width, height = sorted((dims.length, dims.width, dims.height), reverse=True)
        block["Dimensions"] = {
            "UnitOfMeasurement": {"Code": dims.unit},
            "Length": format_dimension(length, record=record, field=f"{field}.dimensions.length"),
            "Width": format_dimension(width, record=record, field=f"{field}.dimensions.width"),
            "Height": format_dimension(height, record=record, field=f"{field}.dimensions.height"),
        }
    block["PackageWeight"] = {
        "UnitOfMeasurement": {"Code": package.weight_unit},
        "Weight": format_weight(package.weight, package.weight_unit, record=record, field=f"{field}.weight"),
    }
    return block


def _goods_description(order: Order) -> str | None:
    seen: list[str] = []
    for line in order.lines:
        text = (line.description or "").strip()
        if text and text not in seen:
            seen.append(text)
    joined = ", ".join(seen)
    # Free text ("Description of Goods", required for most international shipments): a cut is harmless.
    return joined[:DESCRIPTION_MAX].rstrip(", ") or None


#: InternationalForms limits (Shipping.yaml ``#/c/s/ShipmentServiceOptions_InternationalForms``,
#: ``#/c/s/InternationalForms_Product``, ``#/c/s/Product_Unit``)
INVOICE_NUMBER_MAX = 35
PRODUCT_DESCRIPTION_MAX = 35  # Product.Description items
PART_NUMBER_MAX = 35
UNIT_NUMBER_MAX = 7  # Product.Unit.Number
UNIT_VALUE_MAX = 19  # Product.Unit.Value
FORM_TYPE_INVOICE = "01"
#: Product.Unit.UnitOfMeasurement.Code for pieces ("Product Unit of Measure Codes" appendix)
UNIT_PIECES = "PCS"


def _decimal_text(value: Decimal, *, limit: int, record: str, field: str, places: int | None = None) -> str:
    text = format(value.quantize(Decimal(1).scaleb(-places)) if places is not None else value.normalize(), "f")
    if len(text) > limit:
        raise RecordError(f"{field} {text} has {len(text)} characters; UPS accepts at most {limit}", record=record,
                          field=field)
    return text


def build_international_forms(order: Order, *, reason_for_export: str = "SALE",
                              invoice_date: date | None = None) -> dict[str, Any]:
    """The commercial invoice (``ShipmentServiceOptions.InternationalForms``, FormType 01) of ``order``: one
    Product per line (description, quantity in pieces, unit value, origin country, HS code when the line has
    one), the ship-to as SoldTo, the order number as invoice number.

    :param reason_for_export: ``SALE`` (default), ``GIFT``, ``SAMPLE``, ``RETURN``, ``REPAIR``... (a setting).
    :param invoice_date: default today.
    :raises RecordError: a line lacks a value the invoice needs (the field is named, nothing is guessed).
    """
    record = order.number
    currency = check_customs_lines(order)
    reason = check_reason_for_export(reason_for_export)
    if len(order.number) > INVOICE_NUMBER_MAX:
        raise RecordError(f"order number {order.number!r} is longer than the {INVOICE_NUMBER_MAX} characters of "
                          "a UPS invoice number", record=record, field="number")
    products = []
    for index, line in enumerate(order.lines):
        where = f"lines[{index}]"
        product: dict[str, Any] = {
            # free text on the invoice: cut to the field, the item number stays in PartNumber
            "Description": [line.description.strip()[:PRODUCT_DESCRIPTION_MAX]],
            "Unit": {
                "Number": _decimal_text(line.quantity, limit=UNIT_NUMBER_MAX, record=record,
                                        field=f"{where}.quantity"),
                "UnitOfMeasurement": {"Code": UNIT_PIECES},
                "Value": _decimal_text(line.unit_value, limit=UNIT_VALUE_MAX, record=record,
                                       field=f"{where}.unit_value", places=2),
            },
            "OriginCountryCode": line.origin_country.strip().upper(),
        }
        if line.hs_code and line.hs_code.strip():
            product["CommodityCode"] = line.hs_code.strip()
        if line.sku and len(line.sku) <= PART_NUMBER_MAX:
            product["PartNumber"] = line.sku
        products.append(product)
    sold_to = _Party("ship_to", order.ship_to, record).build()
    # SoldTo requires AttentionName (#/c/s/Contacts_SoldTo required): the contact, else the name
    sold_to.setdefault("AttentionName", sold_to["Name"])
    sold_to["Address"] = {k: v for k, v in sold_to["Address"].items() if k != "ResidentialAddressIndicator"}
    return {
        "FormType": [FORM_TYPE_INVOICE],
        "Contacts": {"SoldTo": sold_to},
        "Product": products,
        "InvoiceNumber": order.number,
        "InvoiceDate": (invoice_date or date.today()).strftime("%Y%m%d"),
        "ReasonForExport": reason,
        "CurrencyCode": currency,
    }


def build_ship_request(
    order: Order,
    *,
    service_code: str,
    shipper: Address,
    shipper_number: str,
    ship_from: Address | None = None,
    reference: str,
    reference_code: str | None = None,
    extra_references: Sequence[str] = (),
    negotiated_rates: bool = True,
    label_format: str = "GIF",
    label_stock_height: str = "6",
    request_option: str = "nonvalidate",
    residential: bool | None = None,
    customer_context: str | None = None,
    description: str | None = None,
    reason_for_export: str = "SALE",
    invoice_date: date | None = None,
) -> dict[str, Any]:
    """Build the ``{"ShipmentRequest": ...}`` body that buys labels for one order (Shipping.yaml SHIPRequestWrapper).

    :param order: the order; its ``ship_to`` and ``packages`` are shipped.
    :param service_code: UPS service code (from :func:`~ml_connector.carriers.ups.codes.resolve_service`).
    :param shipper: the shipper (account holder) address, a pipeline setting.
    :param shipper_number: the 6-character UPS account number; billed as BillShipper.
    :param ship_from: the pickup address when it differs from the shipper's.
    :param reference: printed on the label and used to track by reference; at most 35 characters.
    :param reference_code: optional 2-character code from UPS's Reference Number Code table.
    :param extra_references: more values to print after ``reference`` (e.g. the customer's PO number); UPS
        prints the first two package references on the label. Each is at most 35 characters too.
    :param negotiated_rates: send ``NegotiatedRatesIndicator`` (a presence flag: omitted when false).
    :param label_format: ``GIF``, ``ZPL``, ``EPL`` or ``SPL``.
    :param label_stock_height: ``"6"`` or ``"8"`` (inches; width is always 4).
    :param request_option: ``nonvalidate`` (postal/state check) or ``validate`` (city/state/postal check).
    :param residential: ship-to is residential (e.g. from Address Validation); ``None`` uses
        ``order.ship_to.residential``. Only ``True`` sends the indicator.
    :param customer_context: echoed back by UPS; defaults to the order number.
    :param description: description of goods; defaults to the order lines' descriptions.
    :param reason_for_export: the commercial invoice's reason, for goods leaving the customs area of the
        origin (ship-from, else shipper): then ``InternationalForms`` is built from the lines
        (:func:`build_international_forms`), and the references go at shipment level.
    :param invoice_date: the invoice's date (default today).
    :raises ConfigurationError: a setting (shipper number, label format, shipper address...) is invalid.
    :raises MissingWeight: the order has no packages.
    :raises ReferenceTooLong: the reference is longer than 35 characters.
    :raises RecordError: a ship-to or package value does not fit UPS's limits (the message names the field).
    """
    record = order.number
    shipper_number = check_shipper_number(shipper_number)
    label_code = (label_format or "").strip().upper()
    if label_code not in LABEL_FORMATS:
        raise ConfigurationError(f"label_format setting {label_format!r} is not one of "
                                 f"{', '.join(sorted(LABEL_FORMATS))}")
    if str(label_stock_height) not in LABEL_STOCK_HEIGHTS:
        raise ConfigurationError(f"label_stock_height setting {label_stock_height!r} must be 6 or 8")
    if request_option not in REQUEST_OPTIONS:
        raise ConfigurationError(f"request_option setting {request_option!r} must be one of "
                                 f"{', '.join(sorted(REQUEST_OPTIONS))}")
    code = (service_code or "").strip().upper()
    if code not in SERVICE_CODES:
        raise ConfigurationError(f"UPS service code {service_code!r} is not known; "
                                 f"use one of {', '.join(sorted(SERVICE_CODES))}")
    if reference_code is not None and not _REFERENCE_CODE.match(reference_code):
        raise ConfigurationError(f"reference_code setting {reference_code!r} must be a 2-character code from "
                                 "UPS's Reference Number Code table")
    if not order.packages:
        raise MissingWeight("has no packages, so there is no weight to ship; add package weights in the ERP "
                            "or a default weight in the pipeline settings", record=record, field="packages")
    if len(order.packages) > PACKAGES_MAX:
        raise RecordError(f"has {len(order.packages)} packages; UPS accepts at most {PACKAGES_MAX} per shipment",
                          record=record, field="packages")
    reference_entries = [_reference_entry(reference, reference_code, record)]
    reference_entries += [_reference_entry(extra, None, record) for extra in extra_references if extra]
    if len(reference_entries) > 5:  # Package.ReferenceNumber "maximum: 5" (occurrences)
        raise RecordError(f"has {len(reference_entries)} references; UPS takes at most 5", record=record,
                          field="reference")

    ship_to = _Party("ship_to", order.ship_to, record).build()
    is_residential = residential if residential is not None else order.ship_to.residential
    if is_residential is True:
        # Presence flag (trap 5): "N" or false would also mean residential, so omit it unless True.
        ship_to["Address"]["ResidentialAddressIndicator"] = ""

    shipment: dict[str, Any] = {}
    goods = (description or "").strip()[:DESCRIPTION_MAX] or _goods_description(order)
    if goods:
        shipment["Description"] = goods
    shipment["Shipper"] = _Party("shipper", shipper, record).build(ShipperNumber=shipper_number)
    shipment["ShipTo"] = ship_to
    if ship_from is not None:
        shipment["ShipFrom"] = _Party("ship_from", ship_from, record).build()
    # ShipmentCharge is an array (#/c/s/Shipment_PaymentInformation); AccountNumber must equal ShipperNumber
    # (#/c/s/ShipmentCharge_BillShipper/properties/AccountNumber).
    shipment["PaymentInformation"] = {
        "ShipmentCharge": [{"Type": "01", "BillShipper": {"AccountNumber": shipper_number}}]
    }
    if negotiated_rates:
        shipment["ShipmentRatingOptions"] = {"NegotiatedRatesIndicator": ""}
    shipment["Service"] = {"Code": code, "Description": SERVICE_CODES[code]}

    packages = [_package(package, i, record) for i, package in enumerate(order.packages)]
    # the pair is origin (ShipFrom, else Shipper) -> destination, as UPS reads it
    if ((ship_from or shipper).country, order.ship_to.country) in PACKAGE_REFERENCE_PAIRS:
        for package in packages:
            package["ReferenceNumber"] = [dict(entry) for entry in reference_entries]
    else:
        shipment["ReferenceNumber"] = reference_entries
    shipment["Package"] = packages
    if order.documents_only:
        shipment["DocumentsOnlyIndicator"] = ""  # presence flag (trap 5)
    origin = (ship_from or shipper).country
    if needs_commercial_invoice(order, origin):
        shipment["ShipmentServiceOptions"] = {"InternationalForms": build_international_forms(
            order, reason_for_export=reason_for_export, invoice_date=invoice_date)}

    label: dict[str, Any] = {"LabelImageFormat": {"Code": label_code}}
    if label_code == "GIF":
        label["HTTPUserAgent"] = "Mozilla/4.5"  # #/c/s/ShipmentRequest_LabelSpecification/properties/HTTPUserAgent
    # Schema-required even for GIF (#/c/s/ShipmentRequest_LabelSpecification required; trap 14).
    label["LabelStockSize"] = {"Height": str(label_stock_height), "Width": "4"}

    context = (customer_context or order.number).strip()[:CUSTOMER_CONTEXT_MAX]  # echo only
    return {
        "ShipmentRequest": {
            "Request": {"RequestOption": request_option, "TransactionReference": {"CustomerContext": context}},
            "Shipment": shipment,
            "LabelSpecification": label,
        }
    }


def parse_ship_response(body: Mapping[str, Any]) -> ShipmentResult:
    """Read a ShipmentResponse (Shipping.yaml SHIPResponseWrapper) into a :class:`ShipmentResult`.

    PackageResults, Alert and the charge containers are read as object-or-array (trap 1).

    :param body: the decoded 200 body.
    :raises AmbiguousRequestError: the body has no shipment identification number. The labels may
        have been bought, so the caller must look them up (track by reference) before shipping again.
    """
    shipment_response = body.get("ShipmentResponse") if isinstance(body, Mapping) else None
    results = first(get_path(shipment_response, "ShipmentResults"))
    shipment_id = strip_str(get_path(results, "ShipmentIdentificationNumber"))
    if not isinstance(results, Mapping) or not shipment_id:
        raise AmbiguousRequestError(
            "UPS answered the ship request without a ShipmentIdentificationNumber; the label may exist. "
            "Track by reference before shipping this order again."
        )
    warnings = alert_messages(get_path(shipment_response, "Response", "Alert"))
    tracking_numbers: list[str] = []
    labels: list[Label] = []
    for package in as_list(results.get("PackageResults")):
        if not isinstance(package, Mapping):
            continue
        tracking_number = strip_str(package.get("TrackingNumber"))
        if not tracking_number:
            continue
        tracking_numbers.append(tracking_number)
        label = first(package.get("ShippingLabel"))
        image = strip_str(get_path(label, "GraphicImage"))
        if not image:
            continue
        image_format = strip_str(get_path(label, "ImageFormat", "Code")) or "GIF"
        try:
            data = base64.b64decode("".join(image.split()), validate=True)
        except (binascii.Error, ValueError):
            # Keep the tracking numbers (they prove the purchase); the image can be fetched again.
            warnings.append(f"label for {tracking_number} is not valid base64; recover it with the UPS "
                            "Label Recovery API")
            continue
        labels.append(Label(tracking_number=tracking_number, image_format=image_format.upper(), image=data))
    if not tracking_numbers:
        tracking_numbers = [shipment_id]  # = 1Z of the first package (#/c/s/ShipmentResponse_ShipmentResults)

    billing_weight = None
    weight = strip_str(get_path(results, "BillingWeight", "Weight"))
    if weight:
        unit = strip_str(get_path(results, "BillingWeight", "UnitOfMeasurement", "Code"))
        billing_weight = f"{weight} {unit}" if unit else weight

    return ShipmentResult(
        shipment_id=shipment_id,
        tracking_numbers=tracking_numbers,
        labels=labels,
        total_charges=money(get_path(results, "ShipmentCharges", "TotalCharges")),
        negotiated_charges=money(get_path(results, "NegotiatedRateCharges", "TotalCharge")),
        billing_weight=billing_weight,
        warnings=warnings,
    )


def parse_void_response(body: Mapping[str, Any]) -> bool:
    """Tell whether a VoidShipmentResponse says the shipment (or the packages asked for) is voided.

    Status code ``"1"`` means "Voided or Already Voided" (#/c/s/VoidShipmentResponse). Package results are
    read from ``PackageLevelResults`` and the CIE's singular ``PackageLevelResult``, with the CIE's
    ``&#xD;`` garbage stripped from values (trap 11).

    :param body: the decoded 200 body.
    :return: ``True`` when the summary and every package result report code ``1``.
    """
    response = body.get("VoidShipmentResponse") if isinstance(body, Mapping) else None
    response = first(response)
    if not isinstance(response, Mapping):
        return False
    codes = []
    summary = get_path(response, "SummaryResult", "Status", "Code")
    if summary is not None:
        codes.append(strip_str(summary))
    for key in ("PackageLevelResults", "PackageLevelResult"):
        for package in as_list(response.get(key)):
            codes.append(strip_str(get_path(package, "Status", "Code")))
    return bool(codes) and all(code == "1" for code in codes)
