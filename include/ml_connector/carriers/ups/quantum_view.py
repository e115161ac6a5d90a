"""UPS Quantum View (QuantumView.yaml, ``POST /api/quantumview/v3/events``): request bodies and the mapping of
Manifest / Origin / Exception / Delivery / Generic records to canonical tracking results. Pure.

Requests name the subscription (``SubscriptionRequest[].Name``, at most 21 characters); with no date range or
file name UPS answers the unread files. An answer with a ``Bookmark`` has more: the same request is sent again
with that ``Bookmark``, a sibling of ``Request`` (the spec's example wrongly puts it inside
``SubscriptionRequest``), until an answer comes without one. v3 always answers arrays.

Mapping (``#/c/s/SubscriptionFile_*``): Manifest -> label created; Origin -> picked up; Exception -> exception;
Delivery -> delivered (``DeliveryLocation.SignedForByName`` is who signed); Generic by ``ActivityType``: VM void,
OD out for delivery, UR undeliverable returns -> returned, anything else (DS destination scan, UD updated date,
AG, RP...) in transit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_connector.carriers.ups.normalise import as_list, get_path, parse_ups_datetime, strip_str
from ml_connector.models import TrackingEvent, TrackingResult, TrackingStatus

VERSION = "v3"
PATH = f"/api/quantumview/{VERSION}/events"
MAX_NAME = 21

GENERIC_STATUS = {
    "VM": TrackingStatus.VOIDED,
    "OD": TrackingStatus.OUT_FOR_DELIVERY,
    "UR": TrackingStatus.RETURNED,
}


def build_events_request(subscription: str, *, bookmark: str | None = None,
                         context: str = "ml-connector") -> dict[str, Any]:
    """One ``QVEvents`` request for the unread files of ``subscription`` (the next page with ``bookmark``).

    :raises ValueError: the subscription name is empty or longer than 21 characters.
    """
    name = subscription.strip()
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"Quantum View subscription name {subscription!r} must be 1 to {MAX_NAME} characters")
    request: dict[str, Any] = {
        "Request": {"RequestAction": "QVEvents", "TransactionReference": {"CustomerContext": context}},
        "SubscriptionRequest": [{"Name": name}],
    }
    if bookmark:
        request["Bookmark"] = bookmark
    return {"QuantumViewRequest": request}


def _when(record: Mapping[str, Any], date_key: str = "Date", time_key: str = "Time") -> Any:
    date, time = strip_str(record.get(date_key)), strip_str(record.get(time_key))
    if not date:
        return None
    try:
        return parse_ups_datetime(date, time)  # Quantum View gives no offset: read as GMT
    except ValueError:
        return None


def _location(record: Mapping[str, Any]) -> str | None:
    address = get_path(record, "ActivityLocation", "AddressArtifactFormat")
    if not isinstance(address, Mapping):
        return None
    parts = [strip_str(address.get(k)) for k in ("PoliticalDivision2", "PoliticalDivision1", "CountryCode")]
    return ", ".join(p for p in parts if p) or None


def _result(number: str, status: TrackingStatus, when: Any, *, code: str, description: str,
            location: str | None = None, received_by: str | None = None) -> TrackingResult | None:
    if not number or when is None:
        return None
    event = TrackingEvent(tracking_number=number, status=status, code=code, description=description,
                          occurred_at=when, location=location)
    return TrackingResult(tracking_number=number, status=status, events=[event],
                          delivered_at=when if status is TrackingStatus.DELIVERED else None,
                          received_by=received_by)


def _file_results(file: Mapping[str, Any]) -> list[TrackingResult | None]:
    results: list[TrackingResult | None] = []
    for manifest in as_list(file.get("Manifest")):
        when = _when(manifest, "PickupDate", "") if isinstance(manifest, Mapping) else None
        for package in as_list(get_path(manifest, "Package")):
            results.append(_result(strip_str(get_path(package, "TrackingNumber")) or "",
                                   TrackingStatus.LABEL_CREATED, when, code="QV-M", description="Manifest"))
    for origin in (r for r in as_list(file.get("Origin")) if isinstance(r, Mapping)):
        results.append(_result(strip_str(origin.get("TrackingNumber")) or "", TrackingStatus.PICKED_UP,
                               _when(origin), code="QV-O", description="Origin scan", location=_location(origin)))
    for exception in (r for r in as_list(file.get("Exception")) if isinstance(r, Mapping)):
        description = (strip_str(exception.get("StatusDescription")) or strip_str(exception.get("ReasonDescription"))
                       or "Exception")
        results.append(_result(strip_str(exception.get("TrackingNumber")) or "", TrackingStatus.EXCEPTION,
                               _when(exception), code="QV-X", description=description,
                               location=_location(exception)))
    for delivery in (r for r in as_list(file.get("Delivery")) if isinstance(r, Mapping)):
        results.append(_result(strip_str(delivery.get("TrackingNumber")) or "", TrackingStatus.DELIVERED,
                               _when(delivery), code="QV-D", description="Delivered",
                               location=_location(delivery),
                               received_by=strip_str(get_path(delivery, "DeliveryLocation", "SignedForByName"))))
    for generic in (r for r in as_list(file.get("Generic")) if isinstance(r, Mapping)):
        activity = (strip_str(generic.get("ActivityType")) or "").upper()
        when = _when(get_path(generic, "Activity") or {})
        results.append(_result(strip_str(generic.get("TrackingNumber")) or "",
                               GENERIC_STATUS.get(activity, TrackingStatus.IN_TRANSIT), when,
                               code=f"QV-{activity}"[:10], description=f"Generic {activity}"))
    return results


def parse_events_response(body: Any) -> tuple[list[TrackingResult], str | None, list[str]]:
    """``(results, bookmark, errors)`` of one Quantum View answer: one result per record with a tracking number
    and a date (oldest file first, as UPS lists them); the bookmark when there is more; ``Response.Error``
    descriptions."""
    response = get_path(body, "QuantumViewResponse") if isinstance(body, Mapping) else None
    if not isinstance(response, Mapping):
        return [], None, ["the answer has no QuantumViewResponse"]
    errors = [strip_str(get_path(e, "ErrorDescription")) or "error"
              for e in as_list(get_path(response, "Response", "Error"))]
    results: list[TrackingResult] = []
    for subscription in as_list(get_path(response, "QuantumViewEvents", "SubscriptionEvents")):
        for file in as_list(get_path(subscription, "SubscriptionFile")):
            if isinstance(file, Mapping):
                results.extend(r for r in _file_results(file) if r is not None)
    bookmark = strip_str(response.get("Bookmark"))
    return results, bookmark or None, errors
