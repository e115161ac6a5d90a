"""UPS Tracking (Tracking.yaml, Track API v1) and Track Alert webhook events (UPSTrackAlert.yaml):
query parameters, trackResponse -> TrackingResult, TrackingEventRequest -> TrackingEvent.

``#/c/s/X`` abbreviates ``#/components/schemas/X``; "trap N" is the numbered UPS API trap in
``docs/vendors/ups.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from ml_connector.carriers.ups.codes import tracking_status
from ml_connector.carriers.ups.normalise import (
    activity_datetime,
    as_list,
    first,
    get_path,
    parse_ups_datetime,
    strip_str,
)
from ml_connector.carriers.ups.rules import check_shipper_number
from ml_connector.errors import RecordError
from ml_connector.models import TrackingEvent, TrackingResult, TrackingStatus

NOT_FOUND_WARNING = "TW0001"  # "Tracking Information Not Found", sent with HTTP 200 (trap 8)


def build_track_params(*, signature: bool = True) -> dict[str, str]:
    """Query parameters for ``GET /track/v1/details/{inquiryNumber}``.

    :param signature: ask for the signature image (``returnSignature``); the spec types flags as the
        strings ``"true"``/``"false"`` (Tracking.yaml ``#/paths/~1track~1v1~1details~1{inquiryNumber}/get/parameters``).
    """
    return {"locale": "en_US", "returnSignature": "true" if signature else "false"}


def build_reference_track_params(shipper_number: str, from_date: date, to_date: date) -> dict[str, str]:
    """Query parameters for ``GET /track/v1/reference/details/{referenceNumber}``.

    Used to find the label a crashed ship attempt may have bought, by the reference printed on it.

    :param shipper_number: the 6-character UPS account number (``shipperNum``), narrowing the search to ours.
    :param from_date: first pickup date searched (``fromPickUpDate``, YYYYMMDD; the format is undocumented).
    :param to_date: last pickup date searched (``toPickUpDate``).
    :raises ConfigurationError: the shipper number is not 6 alphanumerics.
    :raises ValueError: ``from_date`` is after ``to_date``.
    """
    shipper_number = check_shipper_number(shipper_number)
    if from_date > to_date:
        raise ValueError(f"from_date {from_date} is after to_date {to_date}")
    return {
        "locale": "en_US",
        "fromPickUpDate": from_date.strftime("%Y%m%d"),
        "toPickUpDate": to_date.strftime("%Y%m%d"),
        "shipperNum": shipper_number,
        "refNumType": "SmallPackage",
    }


def _location(address: Any) -> str | None:
    address = first(address)
    if not isinstance(address, Mapping):
        return None
    parts = [strip_str(address.get(key)) for key in ("city", "stateProvince")]
    parts.append(strip_str(address.get("countryCode")) or strip_str(address.get("country")))
    return ", ".join(part for part in parts if part) or None


def _status_of(status: Any) -> TrackingStatus:
    status = first(status)
    if not isinstance(status, Mapping):
        return TrackingStatus.UNKNOWN
    return tracking_status(status.get("type"), status.get("code"), status.get("statusCode"))


def _events(package: Mapping[str, Any], tracking_number: str) -> list[TrackingEvent]:
    events = []
    for activity in as_list(package.get("activity")):
        if not isinstance(activity, Mapping):
            continue
        occurred_at = activity_datetime(activity.get("date"), activity.get("time"), activity.get("gmtDate"),
                                        activity.get("gmtTime"), activity.get("gmtOffset"))
        if occurred_at is None:
            continue  # an undated activity cannot be ordered against the others
        status = first(activity.get("status"))
        status = status if isinstance(status, Mapping) else {}
        events.append(TrackingEvent(
            tracking_number=tracking_number,
            status=_status_of(status),
            code=strip_str(status.get("code")),
            description=strip_str(status.get("description")) or strip_str(status.get("simplifiedTextDescription")),
            occurred_at=occurred_at,
            location=_location(get_path(activity, "location", "address")),
        ))
    # The spec promises most recent first (#/c/s/Activity); sort anyway, stably, rather than trust it.
    return sorted(events, key=lambda event: event.occurred_at, reverse=True)


def _delivery_dates(package: Mapping[str, Any]) -> dict[str, str]:
    dates = {}
    for entry in as_list(package.get("deliveryDate")):
        kind, value = strip_str(get_path(entry, "type")), strip_str(get_path(entry, "date"))
        if kind and value:
            dates.setdefault(kind.upper(), value)
    return dates


def _package_result(package: Mapping[str, Any], fallback_tracking_number: str) -> TrackingResult:
    tracking_number = strip_str(package.get("trackingNumber")) or fallback_tracking_number
    events = _events(package, tracking_number)
    status = _status_of(package.get("currentStatus"))
    if status is TrackingStatus.UNKNOWN and events:
        status = events[0].status

    dates = _delivery_dates(package)
    delivered_at: datetime | None = next(
        (event.occurred_at for event in events if event.status is TrackingStatus.DELIVERED), None)
    if delivered_at is None and "DEL" in dates:
        # deliveryTime type DEL: endTime is "the delivered time" (#/c/s/DeliveryTime/properties/endTime).
        delivery_time = first(package.get("deliveryTime"))
        end_time = None
        if strip_str(get_path(delivery_time, "type")) == "DEL":
            end_time = strip_str(get_path(delivery_time, "endTime"))
        try:
            delivered_at = parse_ups_datetime(dates["DEL"], end_time, events[0].occurred_at.tzinfo if events else None)
        except ValueError:
            delivered_at = None
    if delivered_at is not None and status in (TrackingStatus.UNKNOWN, TrackingStatus.IN_TRANSIT,
                                               TrackingStatus.OUT_FOR_DELIVERY):
        status = TrackingStatus.DELIVERED

    scheduled = dates.get("RDD") or dates.get("SDD")  # a rescheduled date supersedes the original one
    if scheduled and len(scheduled) == 8 and scheduled.isdigit():
        scheduled = f"{scheduled[:4]}-{scheduled[4:6]}-{scheduled[6:]}"

    references: list[str] = []
    for entry in as_list(package.get("referenceNumber")):
        number = strip_str(get_path(entry, "number"))
        if number and number not in references:
            references.append(number)

    return TrackingResult(
        tracking_number=tracking_number,
        status=status,
        events=events,
        delivered_at=delivered_at,
        received_by=strip_str(get_path(package, "deliveryInformation", "receivedBy")),
        scheduled_delivery=scheduled,
        reference_numbers=references,
    )


def _shipments(body: Any) -> list[Mapping[str, Any]]:
    track_response = get_path(body, "trackResponse") if isinstance(body, Mapping) else None
    return [s for s in as_list(get_path(track_response, "shipment")) if isinstance(s, Mapping)]


def _packages(shipment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    warning_codes = {strip_str(get_path(w, "code")) for w in as_list(shipment.get("warnings"))}
    if NOT_FOUND_WARNING in warning_codes:
        return []  # whatever else came with it, UPS says it knows nothing about this number
    return [p for p in as_list(shipment.get("package")) if isinstance(p, Mapping)]


def parse_track_response(body: Mapping[str, Any], tracking_number: str) -> TrackingResult:
    """Read a Track API answer (Tracking.yaml TrackApiResponse) for one tracking number.

    "Not found" arrives as HTTP 200 with warning ``TW0001`` and no package (trap 8): status ``NOT_FOUND``.

    :param body: the decoded 200 body.
    :param tracking_number: the number asked for; picks the package when the answer holds several.
    """
    wanted = tracking_number.strip().upper()
    packages = [package for shipment in _shipments(body) for package in _packages(shipment)]
    if not packages:
        return TrackingResult(tracking_number=tracking_number.strip(), status=TrackingStatus.NOT_FOUND)
    package = next((p for p in packages if (strip_str(p.get("trackingNumber")) or "").upper() == wanted),
                   packages[0])
    return _package_result(package, tracking_number.strip())


def parse_reference_track_response(body: Mapping[str, Any]) -> list[TrackingResult]:
    """Read a track-by-reference answer: one :class:`TrackingResult` per package found.

    Used to adopt a label bought by a crashed attempt; ``reference_numbers`` holds the package's references
    so the caller can check that the match is exact. ``TW0001`` (nothing found) gives ``[]``.

    :param body: the decoded 200 body.
    """
    results = []
    for shipment in _shipments(body):
        for package in _packages(shipment):
            tracking_number = strip_str(package.get("trackingNumber"))
            if tracking_number:
                results.append(_package_result(package, tracking_number))
    return results


def tracking_warnings(body: Mapping[str, Any]) -> list[str]:
    """Return the ``shipment[].warnings`` of a Track API answer as ``"UPS <code>: <message>"``.

    :param body: the decoded 200 body.
    """
    messages = []
    for shipment in _shipments(body):
        for warning in as_list(shipment.get("warnings")):
            code, text = strip_str(get_path(warning, "code")), strip_str(get_path(warning, "message"))
            if code or text:
                messages.append(f"UPS {code}: {text}" if code and text else f"UPS {code or text}")
    return messages


def parse_track_alert_event(body: Mapping[str, Any]) -> TrackingEvent:
    """Read one Track Alert webhook payload (UPSTrackAlert.yaml #/c/s/TrackingEventRequest) into an event.

    The tracking number is stripped (the v1 example has a leading space, trap 13); ``gmtOffset`` uses a dot
    (``"-04.00"``, trap 9); the status comes from ``activityStatus`` type, code and descriptionCode.

    :param body: the decoded POST body.
    :raises RecordError: the payload is not an object, lacks ``trackingNumber`` or ``activityStatus``
        (both required by the schema), or has no usable activity date.
    """
    if not isinstance(body, Mapping):
        raise RecordError(f"Track Alert event is not a JSON object (got {type(body).__name__})",
                          field="trackingNumber")
    tracking_number = strip_str(body.get("trackingNumber"))
    if not tracking_number:
        raise RecordError("Track Alert event has no trackingNumber", field="trackingNumber")
    activity = body.get("activityStatus")
    if not isinstance(activity, Mapping) or not (strip_str(activity.get("type")) or strip_str(activity.get("code"))):
        raise RecordError(f"Track Alert event for {tracking_number} has no activityStatus type or code",
                          field="activityStatus")
    occurred_at = activity_datetime(body.get("localActivityDate"), body.get("localActivityTime"),
                                    body.get("gmtActivityDate"), body.get("gmtActivityTime"), body.get("gmtOffset"))
    if occurred_at is None:
        raise RecordError(f"Track Alert event for {tracking_number} has no readable activity date "
                          "(localActivityDate/gmtActivityDate)", field="localActivityDate")
    return TrackingEvent(
        tracking_number=tracking_number,
        status=tracking_status(activity.get("type"), activity.get("code"), activity.get("descriptionCode")),
        code=strip_str(activity.get("code")),
        description=strip_str(activity.get("description")),
        occurred_at=occurred_at,
        location=_location(body.get("activityLocation")),
    )


def parse_track_alert_result(body: Mapping[str, Any]) -> TrackingResult:
    """Read one Track Alert webhook payload as the package's status at that event: the event, the delivery
    time (``actualDeliveryDate``/``actualDeliveryTime``, local like the activity, so read with ``gmtOffset``),
    who signed (``receivedBy``, enhanced subscriptions) and the scheduled date.

    :param body: the decoded POST body.
    :raises RecordError: as :func:`parse_track_alert_event`.
    """
    event = parse_track_alert_event(body)
    delivered_at: datetime | None = None
    if event.status is TrackingStatus.DELIVERED:
        delivered_at = activity_datetime(body.get("actualDeliveryDate"), body.get("actualDeliveryTime"), None, None,
                                         body.get("gmtOffset")) or event.occurred_at
    scheduled = strip_str(body.get("scheduledDeliveryDate"))
    if scheduled and len(scheduled) == 8 and scheduled.isdigit():
        scheduled = f"{scheduled[:4]}-{scheduled[4:6]}-{scheduled[6:]}"
    return TrackingResult(tracking_number=event.tracking_number, status=event.status, events=[event],
                          delivered_at=delivered_at, received_by=strip_str(body.get("receivedBy")),
                          scheduled_delivery=scheduled or None)


def track_alert_dedupe_key(event: TrackingEvent) -> str:
    """The webhook inbox's dedupe key of a Track Alert event: a replayed delivery of the same scan (same
    number, UTC time and code) is stored once."""
    moment = event.occurred_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"ups:track-alert:{event.tracking_number.upper()}|{moment}|{event.code or event.status.value}"
