"""UPS Track API v1: ``GET /api/track/v1/details/{n}``, ``/shipment/details/{n}``, ``/reference/details/{ref}``.

Per-package scan timelines and ``trackResponse`` answers.

A label starts with one manifest scan (type M, code MP). Moving it along, by the control endpoint
``POST /_sandbox/ups/advance`` or by the ``tracking_auto_advance_seconds`` knob, appends the scans of
each stage: in transit (I/OR origin scan, I/DP departed), out for delivery (I/OT), delivered (D/FS).
An exception (X/X1, weather delay) can happen before delivery; a void adds MV. Activities are listed
most recent first, as UPS does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import TRACKING_NOT_FOUND, ups_error, ups_error_from
from ml_connector_sandbox.ups.shipping import SERVICES, TINY_GIF
from ml_connector_sandbox.ups.state import StoredPackage, StoredShipment, TrackEvent, UpsState

#: Activity times are given in US Eastern standard time, like most CIE answers.
LOCAL_OFFSET = timezone(timedelta(hours=-5))
GMT_OFFSET = "-05:00"
RECEIVED_BY = "JANE DOE"


@dataclass(frozen=True)
class EventKind:
    """What one scan code means; ``where`` says which address it happens at."""

    type: str
    code: str
    description: str
    simplified: str
    status_code: str | None
    where: str  # "origin" | "hub" | "destination"


#: Scan codes used by the sandbox. Types from UPSTrackAlert.yaml (D, I, M, MV, X); 3-digit status codes
#: from the UPS status table (003 ready for UPS, 038 picked up, 005 on the way, 021 out for delivery,
#: 011 delivered, 013 exception). The MV code and wording are the sandbox's.
EVENTS: dict[str, EventKind] = {
    "MP": EventKind("M", "MP", "Shipper created a label, UPS has not received the package yet.",
                    "Label Created", "003", "origin"),
    "OR": EventKind("I", "OR", "Origin Scan", "Picked Up", "038", "origin"),
    "DP": EventKind("I", "DP", "Departed from Facility", "On the Way", "005", "hub"),
    "OT": EventKind("I", "OT", "Out For Delivery Today", "Out for Delivery", "021", "destination"),
    "FS": EventKind("D", "FS", "DELIVERED", "Delivered", "011", "destination"),
    "X1": EventKind("X", "X1", "Severe weather conditions have delayed delivery.", "Delay", "013", "hub"),
    "MV": EventKind("MV", "MV", "Voided Information Received", "Voided", None, "origin"),
}
#: Stages in order and the scans that enter each one.
STAGES = ("label_created", "in_transit", "out_for_delivery", "delivered")
STAGE_SCANS = {"in_transit": ("OR", "DP"), "out_for_delivery": ("OT",), "delivered": ("FS",)}
#: Statuses the advance endpoint accepts.
ADVANCE_STATUSES = ("in_transit", "out_for_delivery", "delivered", "exception")
#: Business days from label to scheduled delivery, per service (default 3).
_TRANSIT_DAYS = {"01": 1, "13": 1, "14": 1, "02": 2, "59": 2, "07": 2, "54": 1, "12": 3, "03": 3, "65": 3,
                 "08": 5, "11": 5}
_HUB = {"city": "Louisville", "stateProvince": "KY", "countryCode": "US", "country": "US"}


# -- timeline --------------------------------------------------------------------------------------
def stage_index(package: StoredPackage) -> int:
    """How far the package got (index into :data:`STAGES`)."""
    reached = 0
    for event in package.events:
        for index, stage in enumerate(STAGES[1:], start=1):
            if event.code in STAGE_SCANS[stage]:
                reached = max(reached, index)
    return reached


def _append(package: StoredPackage, code: str, at: datetime) -> None:
    """Add a scan, never earlier than the previous one (scans stay in order)."""
    last = package.events[-1].at if package.events else at
    package.events.append(TrackEvent(code, max(at, last + timedelta(seconds=1))))


def advance(package: StoredPackage, status: str, now: datetime) -> None:
    """Move a package to ``status``, adding the scans of every stage on the way.

    :raises ValueError: unknown status, a voided package, going backwards, or an exception after delivery.
    """
    if status not in ADVANCE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ADVANCE_STATUSES)}, got {status!r}")
    if package.voided:
        raise ValueError(f"{package.tracking_number} is voided")
    current = stage_index(package)
    if status == "exception":
        if current == STAGES.index("delivered"):
            raise ValueError(f"{package.tracking_number} is already delivered")
        _append(package, "X1", now)
        return
    target = STAGES.index(status)
    if target < current:
        raise ValueError(f"{package.tracking_number} is already {STAGES[current]}, cannot go back to {status}")
    for stage in STAGES[current + 1: target + 1]:
        for code in STAGE_SCANS[stage]:
            _append(package, code, now)


def auto_advance(shipment: StoredShipment, package: StoredPackage, now: datetime, step_seconds: int) -> None:
    """With the auto-advance knob, reach one more stage every ``step_seconds`` after the label."""
    if step_seconds <= 0 or package.voided:
        return
    elapsed = (now - shipment.created_at).total_seconds()
    target = min(int(elapsed // step_seconds), len(STAGES) - 1)
    for index in range(stage_index(package) + 1, target + 1):
        stage_start = shipment.created_at + timedelta(seconds=index * step_seconds)
        for offset, code in enumerate(STAGE_SCANS[STAGES[index]]):
            _append(package, code, stage_start + timedelta(seconds=offset * step_seconds / 2))


# -- addresses and dates ---------------------------------------------------------------------------
def _track_address(ups_address: dict[str, Any], *, with_postal_code: bool = True) -> dict[str, Any]:
    """A Ship-style UPS Address as a Track ``address`` object."""
    lines = ups_address.get("AddressLine") or []
    lines = [lines] if isinstance(lines, str) else lines
    country = ups_address.get("CountryCode", "")
    address = {f"addressLine{index}": line for index, line in enumerate(lines[:3], start=1)}
    address.update({"city": ups_address.get("City", ""), "stateProvince": ups_address.get("StateProvinceCode", ""),
                    "countryCode": country, "country": country})
    if with_postal_code:
        address["postalCode"] = ups_address.get("PostalCode", "")
    return address


def _event_address(shipment: StoredShipment, kind: EventKind) -> dict[str, Any]:
    """Where a scan happened (street lines are never shown for scans)."""
    if kind.where == "hub" and shipment.origin.get("CountryCode", "US") == "US":
        return dict(_HUB)
    source = shipment.ship_to.get("Address", {}) if kind.where == "destination" else shipment.origin
    address = _track_address(source, with_postal_code=kind.code == "FS")
    return {key: value for key, value in address.items() if not key.startswith("addressLine")}


def _local(at: datetime) -> datetime:
    """A UTC time in the sandbox's local zone."""
    return at.astimezone(LOCAL_OFFSET)


def _add_business_days(start: date, days: int) -> date:
    """``start`` plus ``days`` weekdays."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def scheduled_delivery(shipment: StoredShipment) -> date:
    """Scheduled delivery date from the service's transit days."""
    return _add_business_days(_local(shipment.created_at).date(), _TRANSIT_DAYS.get(shipment.service_code, 3))


# -- answer parts ----------------------------------------------------------------------------------
def _status(kind: EventKind) -> dict[str, str]:
    """A Track ``status`` object."""
    status = {"type": kind.type, "description": kind.description, "code": kind.code,
              "simplifiedTextDescription": kind.simplified}
    if kind.status_code:
        status["statusCode"] = kind.status_code
    return status


def _activity(shipment: StoredShipment, event: TrackEvent) -> dict[str, Any]:
    """One ``activity`` entry. ``gmtTime`` drops its leading zero, like the spec example "74700"."""
    kind = EVENTS[event.code]
    local, gmt = _local(event.at), event.at.astimezone(UTC)
    return {
        "location": {"address": _event_address(shipment, kind), "slic": "8999"},
        "status": _status(kind),
        "date": local.strftime("%Y%m%d"),
        "time": local.strftime("%H%M%S"),
        "gmtDate": gmt.strftime("%Y%m%d"),
        "gmtOffset": GMT_OFFSET,
        "gmtTime": str(int(gmt.strftime("%H%M%S"))),
        "logicalScan": kind.type in ("M", "MV"),
    }


def _delivery_dates(shipment: StoredShipment, package: StoredPackage) -> tuple[list[dict], dict]:
    """``deliveryDate[]`` and ``deliveryTime``: DEL once delivered, else SDD (RDD after an exception)."""
    delivered = [event for event in package.events if event.code == "FS"]
    if delivered:
        local = _local(delivered[-1].at)
        return ([{"type": "DEL", "date": local.strftime("%Y%m%d")}],
                {"type": "DEL", "endTime": local.strftime("%H%M%S")})
    scheduled = scheduled_delivery(shipment)
    dates = [{"type": "SDD", "date": scheduled.strftime("%Y%m%d")}]
    if any(event.code == "X1" for event in package.events):
        dates.append({"type": "RDD", "date": _add_business_days(scheduled, 1).strftime("%Y%m%d")})
    return dates, {"type": "EOD", "endTime": "235900"}


def _delivery_information(options: dict[str, str]) -> dict[str, Any]:
    """Proof of delivery; signature and POD only when asked for (``returnSignature``/``returnPOD``)."""
    information: dict[str, Any] = {"receivedBy": RECEIVED_BY, "location": "Front Door"}
    if options.get("returnSignature", "false").lower() == "true":
        information["signature"] = {"image": base64.b64encode(TINY_GIF).decode()}
    if options.get("returnPOD", "false").lower() == "true":
        pod = f"<html><body>Proof of delivery. Received by {RECEIVED_BY}.</body></html>"
        information["pod"] = {"content": base64.b64encode(pod.encode()).decode()}
    return information


def _milestones(package: StoredPackage) -> list[dict[str, Any]]:
    """A simple milestone list (``returnMilestones=true``): one per stage, the current one flagged."""
    reached = stage_index(package)
    names = {"label_created": "Label Created", "in_transit": "On the Way",
             "out_for_delivery": "Out for Delivery", "delivered": "Delivered"}
    return [
        {"category": names[stage], "code": ("MP", "DP", "OT", "FS")[index], "current": index == reached,
         "description": names[stage], "state": "completed" if index <= reached else "not_started"}
        for index, stage in enumerate(STAGES)
    ]


def package_answer(shipment: StoredShipment, package: StoredPackage, options: dict[str, str]) -> dict[str, Any]:
    """One ``package`` object of a ``trackResponse``."""
    events = sorted(package.events, key=lambda event: event.at, reverse=True)
    delivery_dates, delivery_time = _delivery_dates(shipment, package)
    destination = {"type": "DESTINATION", "name": shipment.ship_to.get("Name", ""),
                   "address": _track_address(shipment.ship_to.get("Address", {}))}
    if shipment.ship_to.get("AttentionName"):
        destination["attentionName"] = shipment.ship_to["AttentionName"]
    weight = float(package.weight or 0)
    answer: dict[str, Any] = {
        "trackingNumber": package.tracking_number,
        "deliveryDate": delivery_dates,
        "deliveryTime": delivery_time,
        "activity": [_activity(shipment, event) for event in events],
        "currentStatus": _status(EVENTS[events[0].code]),
        "packageAddress": [{"type": "ORIGIN", "address": _track_address(shipment.origin)}, destination],
        "weight": {"unitOfMeasurement": "KGS" if package.weight_unit == "KGS" else "LBS",
                   "weight": f"{weight / 16 if package.weight_unit == 'OZS' else weight:.2f}"},
        "service": {"code": shipment.service_code.zfill(3), "levelCode": shipment.service_code.zfill(3),
                    "description": f"UPS {SERVICES[shipment.service_code]}".replace("UPS UPS", "UPS")},
        "referenceNumber": [{"type": "PACKAGE", "number": value} for value in package.references]
        + [{"type": "SHIPMENT", "number": value} for value in shipment.references],
        "packageCount": len(shipment.packages),
    }
    if events[0].code == "FS":
        answer["deliveryInformation"] = _delivery_information(options)
    if options.get("returnMilestones", "false").lower() == "true":
        answer["milestones"] = _milestones(package)
    return answer


def not_found_answer(inquiry_number: str) -> dict[str, Any]:
    """UPS's "not found": HTTP 200, a TW0001 warning and no package."""
    return {"trackResponse": {"shipment": [{"inquiryNumber": inquiry_number, "userRelation": [],
                                            "warnings": [dict(TRACKING_NOT_FOUND)]}]}}


def shipment_answer(inquiry_number: str, entries: list[tuple[StoredShipment, list[StoredPackage]]],
                    options: dict[str, str]) -> dict[str, Any]:
    """A ``trackResponse`` with one ``shipment`` per entry (TW0001 when there is none)."""
    if not entries:
        return not_found_answer(inquiry_number)
    shipments = [
        {"inquiryNumber": inquiry_number if len(entries) == 1 else shipment.shipment_id,
         "package": [package_answer(shipment, package, options) for package in packages], "userRelation": []}
        for shipment, packages in entries
    ]
    return {"trackResponse": {"shipment": shipments}}


# -- queries ---------------------------------------------------------------------------------------
def refresh(state: UpsState, shipment: StoredShipment, package: StoredPackage) -> None:
    """Apply the auto-advance knob before answering (under the state lock)."""
    auto_advance(shipment, package, state.now(), state.knobs["tracking_auto_advance_seconds"])


def _pickup_window(state: UpsState, options: dict[str, str]) -> tuple[date, date]:
    """``fromPickUpDate``/``toPickUpDate`` (YYYYMMDD); defaults are the spec's currentDate-14 .. currentDate."""
    today = _local(state.now()).date()

    def parse(name: str, default: date) -> date:
        try:
            return datetime.strptime(options.get(name, ""), "%Y%m%d").date()
        except ValueError:
            return default
    return parse("fromPickUpDate", today - timedelta(days=14)), parse("toPickUpDate", today)


def _matches_filters(shipment: StoredShipment, options: dict[str, str]) -> bool:
    """shipperNum, destCountry and destZip filters of reference tracking."""
    ship_to = shipment.ship_to.get("Address", {})
    if options.get("shipperNum") and options["shipperNum"].upper() != shipment.shipper_number:
        return False
    if options.get("destCountry") and options["destCountry"].upper() != ship_to.get("CountryCode", "").upper():
        return False
    return not (options.get("destZip") and not ship_to.get("PostalCode", "").startswith(options["destZip"][:5]))


def find_by_reference(state: UpsState, reference: str, options: dict[str, str]) -> list[
        tuple[StoredShipment, list[StoredPackage]]]:
    """Shipments carrying ``reference`` (package or shipment level), oldest first, voided ones included.

    A label bought by a call whose answer never arrived is found here too: that is how a client
    adopts it instead of buying a second one. The ``reference_index_lag_seconds`` knob hides shipments
    younger than that on the sandbox clock (UPS's reference index lags minutes behind a purchase); move
    ``clock_offset_seconds`` forward, or set the knob to 0, and the index has caught up.
    """
    wanted = reference.strip().casefold()
    start, end = _pickup_window(state, options)
    found = []
    with state.lock:
        indexed_before = state.now() - timedelta(seconds=state.knobs["reference_index_lag_seconds"])
        for shipment in state.shipments.values():
            if not (start <= _local(shipment.created_at).date() <= end) or not _matches_filters(shipment, options):
                continue
            if shipment.created_at > indexed_before:
                continue
            shipment_level = any(value.casefold() == wanted for value in shipment.references)
            packages = [package for package in shipment.packages if shipment_level
                        or any(value.casefold() == wanted for value in package.references)]
            for package in packages:
                refresh(state, shipment, package)
            if packages:
                found.append((shipment, packages))
    return found


# -- routes ----------------------------------------------------------------------------------------
def _require_track_headers(request: Request) -> None:
    """Tracking.yaml marks ``transId`` and ``transactionSrc`` as required headers."""
    missing = [name for name in ("transId", "transactionSrc") if not request.headers.get(name)]
    if missing:
        raise ups_error(400, codes.TRACK_HEADER_MISSING, f"Missing required header: {', '.join(missing)}")


def _check_inquiry_number(number: str) -> None:
    """Tracking.yaml: an inquiry number is 7 to 34 characters."""
    if not 7 <= len(number.strip()) <= 34:
        raise ups_error_from(400, codes.INQUIRY_INVALID)


def router(state: UpsState) -> APIRouter:
    """Track by number, by shipment and by reference (mounted under ``/api``)."""
    api = APIRouter(tags=["Tracking"])

    @api.get("/track/v1/details/{inquiry_number}")
    def track_details(inquiry_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        _check_inquiry_number(inquiry_number)
        state.increment("track_requests")
        with state.lock:
            found = state.find_package(inquiry_number)
            if found:
                refresh(state, *found)
            entries = [(found[0], [found[1]])] if found else []
            return JSONResponse(shipment_answer(inquiry_number, entries, dict(request.query_params)))

    @api.get("/track/v1/shipment/details/{inquiry_number}")
    def track_shipment(inquiry_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        _check_inquiry_number(inquiry_number)
        state.increment("track_requests")
        offset = request.query_params.get("offset", "0")
        count = request.query_params.get("count", "50")
        if not (offset.isdigit() and count.isdigit()):
            raise ups_error(400, codes.SCHEMA_INVALID, "offset and count must be whole numbers")
        offset, count = int(offset), int(count)
        with state.lock:
            found = state.find_package(inquiry_number)
            entries = []
            if found:
                shipment = found[0]
                for package in shipment.packages:
                    refresh(state, shipment, package)
                entries = [(shipment, shipment.packages[offset: offset + count])]
            return JSONResponse(shipment_answer(inquiry_number, entries, dict(request.query_params)))

    @api.get("/track/v1/reference/details/{reference_number}")
    def track_reference(reference_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        state.increment("track_reference_requests")
        if state.take_one("reference_lookup_error_next"):
            raise ups_error_from(400, codes.INQUIRY_INVALID)  # a refused lookup: permanent for the client
        options = dict(request.query_params)
        with state.lock:
            found = find_by_reference(state, reference_number, options)
            return JSONResponse(shipment_answer(reference_number, found, options))

    return api
