"""Canonical records shared by every ERP and carrier mapping.

ERP mappings (``ml_connector.erp.*``) turn ERP documents into :class:`Order`; carrier mappings
(``ml_connector.carriers.*``) turn :class:`Order` into carrier requests and carrier answers into
:class:`AddressValidation`, :class:`ShipmentResult` and :class:`TrackingResult`. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def iso_country(code: str | None) -> str | None:
    """``code`` upper-cased when it is an ISO 3166-1 alpha-2 country code (pycountry's data), else ``None``."""
    import pycountry

    text = (code or "").strip().upper()
    if len(text) != 2 or not text.isalpha():
        return None
    return text if pycountry.countries.get(alpha_2=text) is not None else None


def iso_subdivision(country: str, code: str | None) -> str | None:
    """``code`` upper-cased when ``COUNTRY-CODE`` is an ISO 3166-2 subdivision (state, province), else ``None``."""
    import pycountry

    text = (code or "").strip().upper()
    if not text:
        return None
    return text if pycountry.subdivisions.get(code=f"{country.upper()}-{text}") is not None else None


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Address(_Record):
    """A postal address with the party at it.

    :param residential: ``True``/``False`` once classified (by the ERP or by UPS Address Validation),
        ``None`` while unknown.
    """

    name: str
    attention: str | None = None
    phone: str | None = None
    email: str | None = None
    lines: list[str] = Field(min_length=1)
    city: str
    state: str | None = None
    postal_code: str | None = None
    country: str = Field(min_length=2, max_length=2)
    residential: bool | None = None

    @field_validator("country")
    @classmethod
    def _upper_country(cls, value: str) -> str:
        return value.upper()

    @field_validator("lines")
    @classmethod
    def _strip_lines(cls, value: list[str]) -> list[str]:
        lines = [line.strip() for line in value if line and line.strip()]
        if not lines:
            raise ValueError("an address needs at least one non-empty street line")
        return lines


class Dimensions(_Record):
    length: Decimal = Field(gt=0)
    width: Decimal = Field(gt=0)
    height: Decimal = Field(gt=0)
    unit: Literal["IN", "CM"] = "IN"


class Package(_Record):
    """One physical parcel. The weight is never defaulted to zero: a mapping that cannot find one
    raises :class:`ml_connector.errors.MissingWeight` instead. Carrier packaging codes are the carrier's
    business (``carriers/<name>``), not the order's."""

    weight: Decimal = Field(gt=0)
    weight_unit: Literal["LBS", "KGS", "OZS"] = "LBS"
    dimensions: Dimensions | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_fields(cls, data: Any) -> Any:
        # ledgers written by 0.1.0 stored a UPS packaging code inside every package
        if isinstance(data, dict) and "packaging_code" in data:
            data = {k: v for k, v in data.items() if k != "packaging_code"}
        return data


class OrderLine(_Record):
    """One line of goods. The customs fields (``unit_value`` to ``hs_code``) are optional: an ERP fills what it
    has, and the carrier decides which it needs (a commercial invoice for goods leaving the customs area);
    a value a carrier needs but the line lacks quarantines the order, it is never guessed.

    :param unit_value: value of one unit, in ``currency``.
    :param currency: ISO 4217 code of ``unit_value``.
    :param origin_country: ISO 3166 alpha-2 country where the goods were made.
    :param hs_code: the customs tariff (HS / commodity) code, where the ERP has one.
    """

    sku: str
    description: str | None = None
    quantity: Decimal
    unit_weight: Decimal | None = None
    unit_value: Decimal | None = None
    currency: str | None = None
    origin_country: str | None = None
    hs_code: str | None = None


class Order(_Record):
    """A released ERP order (or shipment document) ready to ship.

    :param erp: ERP name, e.g. ``business_central``.
    :param erp_id: the ERP's immutable id for the document (a GUID in Business Central).
    :param number: the document number a person knows (``SO-1001``); stamped on the label.
    :param ship_method: the ERP's shipment method code, mapped to a carrier service by the carrier.
    :param ship_method_description: the method's description or display name as the ERP returns it
        ("UPS Next Day Air"), tried when the code is not mapped.
    :param etag: the ERP's concurrency token at read time, when the ERP has one.
    """

    erp: str
    erp_id: str
    number: str
    ship_method: str | None = None
    ship_method_description: str | None = None
    ship_to: Address
    packages: list[Package] = Field(default_factory=list)
    lines: list[OrderLine] = Field(default_factory=list)
    modified_at: datetime | None = None
    etag: str | None = None
    customer_reference: str | None = None
    #: written or printed papers of no commercial value (no commercial invoice needed)
    documents_only: bool = False


class AddressStatus(enum.StrEnum):
    VALID = "valid"
    AMBIGUOUS = "ambiguous"
    NO_CANDIDATES = "no_candidates"


class AddressClassification(enum.StrEnum):
    UNCLASSIFIED = "unclassified"
    COMMERCIAL = "commercial"
    RESIDENTIAL = "residential"


class AddressCandidate(_Record):
    lines: list[str]
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    postal_code_extension: str | None = None
    country: str
    classification: AddressClassification = AddressClassification.UNCLASSIFIED


class AddressValidation(_Record):
    """Outcome of a street-level address check."""

    status: AddressStatus
    classification: AddressClassification = AddressClassification.UNCLASSIFIED
    candidates: list[AddressCandidate] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)

    @property
    def residential(self) -> bool | None:
        if self.classification is AddressClassification.UNCLASSIFIED:
            return None
        return self.classification is AddressClassification.RESIDENTIAL


class Money(_Record):
    amount: Decimal
    currency: str


class Label(_Record):
    """One package's label as the carrier returned it (``image`` is the decoded bytes)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64")

    tracking_number: str
    image_format: str
    image: bytes


class ShipmentResult(_Record):
    shipment_id: str
    tracking_numbers: list[str]
    labels: list[Label] = Field(default_factory=list)
    total_charges: Money | None = None
    negotiated_charges: Money | None = None
    billing_weight: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def charges(self) -> Money | None:
        """What the shipper pays: the negotiated total when UPS returned one, else the published total."""
        return self.negotiated_charges or self.total_charges


class TrackingStatus(enum.StrEnum):
    """The canonical status set every carrier's scans map to (``docs/architecture.md``, "Tracking")."""

    LABEL_CREATED = "label_created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    VOIDED = "voided"
    RETURNED = "returned"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


class TrackingEvent(_Record):
    tracking_number: str
    status: TrackingStatus
    code: str | None = None
    description: str | None = None
    occurred_at: datetime  # timezone-aware
    location: str | None = None


class TrackingResult(_Record):
    tracking_number: str
    status: TrackingStatus
    events: list[TrackingEvent] = Field(default_factory=list)  # most recent first
    delivered_at: datetime | None = None
    received_by: str | None = None
    scheduled_delivery: str | None = None
    reference_numbers: list[str] = Field(default_factory=list)
    shipment_id: str | None = None
