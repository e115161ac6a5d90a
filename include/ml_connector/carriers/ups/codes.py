"""UPS code tables: services, ERP ship methods, tracking statuses, address classifications.

Each table keeps the vendor's name beside the code so it can be read against the spec it cites
("notes" = ``docs/vendors/ups.md``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ml_connector.errors import ConfigurationError, UnknownShipMethod, shown
from ml_connector.models import AddressClassification, TrackingStatus

# Shipping.yaml #/components/schemas/Shipment_Service/properties/Code (docs/vendors/ups.md §3). Names are the US-origin
# ones (Rating.yaml splits domestic/international the same way); UPS renames some by origin country
# (from CA, 01 is "Express"), which only matters for display: the code is what UPS bills.
SERVICE_CODES: dict[str, str] = {
    "01": "Next Day Air",
    "02": "2nd Day Air",
    "03": "Ground",
    "07": "Worldwide Express",
    "08": "Worldwide Expedited",
    "11": "Standard",
    "12": "3 Day Select",
    "13": "Next Day Air Saver",
    "14": "Next Day Air Early",
    "17": "Worldwide Economy DDU",
    "54": "Worldwide Express Plus",
    "59": "2nd Day Air A.M.",
    "65": "Saver",
    "70": "Access Point Economy",
    "71": "Worldwide Express Freight Midday",
    "72": "Worldwide Economy DDP",
    "74": "Express 12:00",
    "75": "Heavy Goods",
    "82": "Today Standard",
    "83": "Today Dedicated Courier",
    "84": "Today Intercity",
    "85": "Today Express",
    "86": "Today Express Saver",
    "96": "Worldwide Express Freight",
    "M2": "First Class Mail",
    "M3": "Priority Mail",
    "M4": "Expedited Mail Innovations",
    "M5": "Priority Mail Innovations",
    "M6": "Economy Mail Innovations",
    "M7": "Mail Innovations Returns",
    "C6": "Roadie XD AM",
    "C7": "Roadie XD PM",
    "C8": "Roadie XD Anytime",
    "T0": "Master",
    "T1": "LTL",
}

# ERP shipment-method names -> UPS service code. Keys are stored normalised (see normalise_ship_method);
# a pipeline's ``ship_method_map`` setting is layered over these by build_ship_method_map().
DEFAULT_SHIP_METHOD_MAP: dict[str, str] = {
    "GROUND": "03",
    "UPS GROUND": "03",
    "NEXT DAY AIR": "01",
    "UPS NEXT DAY AIR": "01",
    "NDA": "01",
    "2ND DAY AIR": "02",
    "UPS 2ND DAY AIR": "02",
    "2DA": "02",
    "3 DAY SELECT": "12",
    "UPS 3 DAY SELECT": "12",
    "3DS": "12",
    "NEXT DAY AIR SAVER": "13",
    "NEXT DAY AIR EARLY": "14",
    "2ND DAY AIR AM": "59",
    "SAVER": "65",
    "UPS SAVER": "65",
    "STANDARD": "11",
    "UPS STANDARD": "11",
    "WORLDWIDE EXPRESS": "07",
    "EXPEDITED": "08",
    "WORLDWIDE EXPEDITED": "08",
    "EXPRESS PLUS": "54",
    "WORLDWIDE EXPRESS PLUS": "54",
}

# Packaging.Code (Shipping.yaml #/components/schemas/Package_Packaging/properties/Code), the common ones.
PACKAGING_CODES: dict[str, str] = {
    "01": "UPS Letter",
    "02": "Customer Supplied Package",
    "03": "Tube",
    "04": "PAK",
    "21": "UPS Express Box",
    "24": "UPS 25KG Box",
    "25": "UPS 10KG Box",
    "30": "Pallet",
    "2a": "Small Express Box",
    "2b": "Medium Express Box",
    "2c": "Large Express Box",
}

# LabelImageFormat.Code accepted on requests (Shipping.yaml
# #/components/schemas/LabelSpecification_LabelImageFormat/properties/Code; PNG is response-only).
LABEL_FORMATS = frozenset({"GIF", "ZPL", "EPL", "SPL"})
# LabelStockSize.Height: "Only valid values are 6 or 8" (#/components/schemas/LabelSpecification_LabelStockSize).
LABEL_STOCK_HEIGHTS = frozenset({"6", "8"})

# XAV AddressClassification.Code (AddressValidation.yaml #/components/schemas/XAVResponse_AddressClassification).
ADDRESS_CLASSIFICATIONS: dict[str, AddressClassification] = {
    "0": AddressClassification.UNCLASSIFIED,
    "1": AddressClassification.COMMERCIAL,
    "2": AddressClassification.RESIDENTIAL,
}

# Activity status *type*: UPSTrackAlert.yaml #/components/schemas/TrackingEventRequest/properties/activityStatus
# (D, I, M, MV, U, X); DO/DD/W/NA from the UPS appendix copied in karrio; P is the legacy XML pickup type (docs/vendors/ups.md §5).
TRACKING_STATUS_TYPES: dict[str, TrackingStatus] = {
    "D": TrackingStatus.DELIVERED,  # Delivery
    "I": TrackingStatus.IN_TRANSIT,  # In progress / On the way
    "M": TrackingStatus.LABEL_CREATED,  # Manifest (label created, billing information received)
    "MV": TrackingStatus.VOIDED,  # Manifest void
    "X": TrackingStatus.EXCEPTION,  # Package exception
    "P": TrackingStatus.PICKED_UP,  # Pickup
    "U": TrackingStatus.IN_TRANSIT,  # Updated delivery date or time
    "DO": TrackingStatus.IN_TRANSIT,  # Delivered origin CFS (freight): not yet at the consignee
    "DD": TrackingStatus.IN_TRANSIT,  # Delivered destination CFS (freight)
    "W": TrackingStatus.IN_TRANSIT,  # Warehousing
    "NA": TrackingStatus.UNKNOWN,  # Not available
}

# Two-character activity codes that say more than their type (type I covers both "on the way" and
# "out for delivery"). Notes §5 and §11 (karrio units.TrackingStatus); MP from the Track Alert v1 example.
TRACKING_STATUS_CODES: dict[str, TrackingStatus] = {
    "FS": TrackingStatus.DELIVERED,
    "KB": TrackingStatus.DELIVERED,
    "OT": TrackingStatus.OUT_FOR_DELIVERY,
    "OD": TrackingStatus.OUT_FOR_DELIVERY,
    "OR": TrackingStatus.PICKED_UP,  # origin scan
    "PU": TrackingStatus.PICKED_UP,
    # [U] "returned to shipper" (karrio units.TrackingStatus); unverified against a UPS table
    "RS": TrackingStatus.RETURNED,
    "RF": TrackingStatus.EXCEPTION,  # delivery refused / failed
    "UR": TrackingStatus.EXCEPTION,
    "MP": TrackingStatus.LABEL_CREATED,
}

# Three-digit status codes (Track ``status.statusCode``, Track Alert ``activityStatus.descriptionCode``),
# from the "Tracking status description codes" table (docs/vendors/ups.md §5).
TRACKING_STATUS_DESCRIPTION_CODES: dict[str, TrackingStatus] = {
    "003": TrackingStatus.LABEL_CREATED,  # Shipment Ready for UPS
    "005": TrackingStatus.IN_TRANSIT,  # On the Way
    "011": TrackingStatus.DELIVERED,
    "013": TrackingStatus.EXCEPTION,
    "021": TrackingStatus.OUT_FOR_DELIVERY,
    "038": TrackingStatus.PICKED_UP,  # Picked Up
}


def normalise_ship_method(ship_method: str) -> str:
    """Normalise an ERP shipment-method name for lookup: strip, upper-case, collapse inner spaces.

    :param ship_method: the ERP's value, e.g. ``" ups  ground"``.
    """
    return " ".join(ship_method.split()).upper()


def build_ship_method_map(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Layer a pipeline's ``ship_method_map`` setting over :data:`DEFAULT_SHIP_METHOD_MAP`.

    Checking the values here (at settings load) turns a typo into one configuration error rather than
    one quarantined record per order.

    :param overrides: ERP method name -> UPS service code, as configured.
    :raises ConfigurationError: a value is not a UPS service code.
    """
    merged = {normalise_ship_method(k): v for k, v in DEFAULT_SHIP_METHOD_MAP.items()}
    for method, code in (overrides or {}).items():
        code_norm = str(code).strip().upper()
        if code_norm not in SERVICE_CODES:
            raise ConfigurationError(
                f"ship_method_map setting: {method!r} maps to {code!r}, which is not a UPS service code; "
                f"use one of {', '.join(sorted(SERVICE_CODES))}"
            )
        merged[normalise_ship_method(str(method))] = code_norm
    return merged


def _service_by_name(text: str) -> str | None:
    """A UPS service code whose name (with or without the "UPS " prefix) is ``text`` (normalised)."""
    name = text[4:] if text.startswith("UPS ") else text
    for code, service_name in SERVICE_CODES.items():
        if normalise_ship_method(service_name) == name:
            return code
    return None


def resolve_service(ship_method: str | None, ship_method_map: Mapping[str, str], *, record: str,
                    description: str | None = None) -> str:
    """Resolve an ERP shipment method to a UPS service code.

    Customers name their shipment methods freely (``GRD``, ``NEXTDAY``, ``UPS-2D``), so the method is tried
    in this order: its code in ``ship_method_map``; its description (the method's display name as the ERP
    returns it, e.g. "UPS Next Day Air") in the map; the description or code as a UPS service name
    ("Next Day Air", "UPS Ground"); the code or description as a bare UPS service code (``03``).

    :param ship_method: the order's shipment method code.
    :param ship_method_map: ERP method name -> UPS code (see :func:`build_ship_method_map`); keys are
        compared after normalisation, so the map may be written in any case.
    :param record: the ERP document number, for the error message.
    :param description: the method's description / display name, when the ERP has one.
    :raises UnknownShipMethod: nothing matched; the message names the code and the description.
    """
    lookup = {normalise_ship_method(str(k)): str(v).strip().upper() for k, v in ship_method_map.items()}
    candidates = [normalise_ship_method(v) for v in (ship_method, description) if v and v.strip()]
    for key in candidates:
        if key in lookup:
            code = lookup[key]
            if code not in SERVICE_CODES:
                raise ConfigurationError(
                    f"ship_method_map setting: {key!r} maps to {code!r}, which is not a UPS service code")
            return code
    for key in candidates:
        code = _service_by_name(key)
        if code is not None:
            return code
    for key in candidates:
        if key in SERVICE_CODES:
            return key
    known = ", ".join(sorted(lookup)) or "(none)"
    method = shown(ship_method) if ship_method else "(empty)"
    if description and description.strip() and description != ship_method:
        method += f" ({shown(description.strip())})"
    raise UnknownShipMethod(
        f"shipment method {method} is not mapped to a UPS service. Known methods: {known}; "
        f"a UPS service name (Next Day Air) or code (03) also works. Add the method to the pipeline's "
        f"ship_method_map setting or change it on the ERP document.",
        record=record,
        field="ship_method",
    )


def tracking_status(
    status_type: str | None, code: str | None = None, description_code: str | int | None = None
) -> TrackingStatus:
    """Map a UPS activity status to the canonical status.

    The two-character code wins (``OT`` is type ``I`` but means out for delivery), then the three-digit
    description code, then the type.

    :param status_type: activity status type (``D``, ``I``, ``M``, ``MV``, ``X``, ``P``, ``U``...).
    :param code: two-character activity code (``FS``, ``OT``...).
    :param description_code: three-digit status code (``011``); an int is zero-padded because a JSON
        producer may have dropped the leading zero.
    """
    code_key = (code or "").strip().upper()
    if code_key in TRACKING_STATUS_CODES:
        return TRACKING_STATUS_CODES[code_key]
    if description_code is not None and str(description_code).strip().isdigit():
        desc_key = str(description_code).strip().zfill(3)
        if desc_key in TRACKING_STATUS_DESCRIPTION_CODES:
            return TRACKING_STATUS_DESCRIPTION_CODES[desc_key]
    return TRACKING_STATUS_TYPES.get((status_type or "").strip().upper(), TrackingStatus.UNKNOWN)
