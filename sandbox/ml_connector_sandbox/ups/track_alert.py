"""UPS Track Alert (v1 and v2 subscriptions, and the event emitter) and Quantum View, on the sandbox clock.

Subscriptions (``/api/track/v1/subscription/standard/package``, ``/api/track/v2/subscription/{type}/package``):
bodies are validated against the vendored specs (UPSTrackAlert-v1-aee93d6.yaml, UPSTrackAlert.yaml); more than
100 numbers is VSS220 (the whole request rejected); a number that breaks the spec's pattern makes the request a
400 listing it in ``invalidTrackingNumbers`` (the batch is sunk: the client resubmits the others); a well-formed
number this sandbox never created is answered in ``invalidTrackingNumbers`` of a 200. A subscription lasts 14
days on the sandbox clock. The knob ``track_alert_fail_next`` makes the next N subscription calls answer 503.

The emitter posts a ``TrackingEventRequest`` for each scan of a subscribed package (the same timeline the Track
API answers from: :mod:`.tracking`) that happens while its subscription is active, once. v1: to the
subscription's ``destination.url`` with the header ``credential: <destination.credential>``. v2: to the knob
``track_alert_v2_webhook_url`` ("registered in the portal") with ``x-api-key`` = the subscriber's client id and a
bearer token fetched from ``track_alert_v2_token_url`` with HTTP Basic (``track_alert_v2_token_client_id`` /
``..._secret``), as UPSTrackAlert.yaml's ``clientOauth2`` scheme describes. ``User-Agent: UPSPubSubTrackingService``
on both. A post that fails is lost (UPS: "events will be lost"; counter ``track_alert_events_lost``). It runs
every ``track_alert_emit_interval_ms`` (0: only on ``POST /_sandbox/ups/emit``, which tests use to be
deterministic).

Quantum View (``POST /api/quantumview/v3/events``): every scan of every package becomes one record of the
subscription named by the knob ``quantum_view_subscription`` (Manifest, Origin, Exception, Delivery, Generic);
a request returns up to ``quantum_view_page_size`` unread records and a ``Bookmark`` when more are left.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import ups_error
from ml_connector_sandbox.ups.state import StoredPackage, StoredShipment, TrackEvent, UpsState
from ml_connector_sandbox.ups.tracking import EVENTS, _event_address, _local, refresh, scheduled_delivery
from ml_connector_sandbox.ups.validation import json_body, reject_invalid, validator

NUMBER = re.compile(r"^1Z[0-9A-Z]{16}$|^1R[0-9A-Z]{14}$|^1R[0-9A-Z]{26}$")
MAX_NUMBERS = 100
LIFETIME = timedelta(days=14)
USER_AGENT = "UPSPubSubTrackingService"
#: UPSTrackAlert.yaml "Error Codes": VSS220 = more than 100 numbers; the invalid-number code is the sandbox's
TOO_MANY_NUMBERS = ("VSS220", "The maximum number of tracking numbers per request is 100. The Subscription "
                    "request has been rejected.")
INVALID_NUMBER = "VSS100"
UNAVAILABLE = ("10004", "The service is temporarily unavailable")
#: the v2 gmtOffset style ("-05.00", with a dot: UPSTrackAlert.yaml #/c/s/TrackingEventRequest/properties/gmtOffset)
GMT_OFFSET_DOT = "-05.00"


@dataclass
class Subscription:
    """One subscribed number."""

    tracking_number: str
    style: str  # v1 | v2
    kind: str  # standard | enhanced
    subscribed_at: datetime
    expires_at: datetime
    url: str | None = None
    credential: str | None = None
    client_id: str | None = None
    sent: set[tuple[str, str]] = field(default_factory=set)  # (code, at) of events already posted


def _store(state: UpsState) -> dict[str, Any]:
    """The Track Alert / Quantum View part of the state (created on first use, emptied by reset())."""
    extra = state.__dict__.setdefault("_track_alert", {})
    if extra.get("generation") is not state.shipments:  # reset() replaced the shipments: start over
        extra.clear()
        extra.update(generation=state.shipments, subscriptions={}, qv_recorded=set(), qv_unread=[])
    return extra


def subscriptions(state: UpsState) -> dict[str, Subscription]:
    return _store(state)["subscriptions"]


# -- subscriptions -------------------------------------------------------------------------------------------

def subscribe(state: UpsState, request: Request, body: Any, *, style: str, kind: str) -> JSONResponse:
    numbers = body.get("trackingNumberList") if isinstance(body, dict) else None
    if isinstance(numbers, list) and len(numbers) > MAX_NUMBERS:
        raise ups_error(400, *TOO_MANY_NUMBERS)
    if isinstance(numbers, list):
        bad = [n for n in numbers if not (isinstance(n, str) and NUMBER.match(n))]
        if bad:
            state.increment("track_alert_rejected_batches")
            return JSONResponse({"invalidTrackingNumbers": [str(n) for n in bad], "response": {"errors": [
                {"code": INVALID_NUMBER, "message": f"Invalid tracking number(s): {', '.join(map(str, bad[:5]))}. "
                                                   "The Subscription request has been rejected."}]}},
                                status_code=400)
    if style == "v1":
        errors = validator("UPSTrackAlert-v1-aee93d6.yaml").request_errors(
            "/subscription/standard/package", "post", body)
    else:
        errors = validator("UPSTrackAlert.yaml").request_errors("/subscription/{type}/package", "post", body)
    reject_invalid(state, request, errors)
    if state.take_one("track_alert_fail_next"):
        raise ups_error(503, *UNAVAILABLE)
    client_id = client_of(state, request)
    valid, invalid = [], []
    now = state.now()
    with state.lock:
        store = subscriptions(state)
        for number in numbers:
            if state.find_package(number) is None:
                invalid.append(number)
                continue
            previous = store.get(number)
            destination = body.get("destination") or {}
            store[number] = Subscription(number, style, kind, now, now + LIFETIME, url=destination.get("url"),
                                         credential=destination.get("credential"), client_id=client_id,
                                         sent=previous.sent if previous else set())
            valid.append(number)
    state.increment("track_alert_subscriptions", by=len(valid))
    state.increment("track_alert_requests")
    return JSONResponse({"validTrackingNumbers": valid, "invalidTrackingNumbers": invalid})


# -- the emitter ---------------------------------------------------------------------------------------------

def event_payload(shipment: StoredShipment, package: StoredPackage, event: TrackEvent, *, style: str,
                  kind: str) -> dict[str, Any]:
    """A ``TrackingEventRequest`` for one scan (gmtOffset with a dot, as both specs demand; Track says "-05:00")."""
    spec = EVENTS[event.code]
    local, gmt_utc = _local(event.at), event.at.astimezone(UTC)
    address = _event_address(shipment, spec)
    payload: dict[str, Any] = {
        "trackingNumber": package.tracking_number,
        "localActivityDate": local.strftime("%Y%m%d"),
        "localActivityTime": local.strftime("%H%M%S"),
        "activityLocation": {"city": address.get("city", ""), "stateProvince": address.get("stateProvince", ""),
                             "postalCode": address.get("postalCode", ""), "country": address.get("countryCode", "")},
        "activityStatus": {"type": spec.type, "code": spec.code, "description": spec.simplified},
        "scheduledDeliveryDate": scheduled_delivery(shipment).strftime("%Y%m%d"),
        "actualDeliveryDate": local.strftime("%Y%m%d") if spec.code == "FS" else "",
        "actualDeliveryTime": local.strftime("%H%M%S") if spec.code == "FS" else "",
        "gmtActivityDate": gmt_utc.strftime("%Y%m%d"),
        "gmtActivityTime": gmt_utc.strftime("%H%M%S"),
        "gmtOffset": GMT_OFFSET_DOT,
    }
    # blank fields are left out: the schema's patterns refuse "" (UPS documents them "blank until delivery")
    payload["activityLocation"] = {k: v for k, v in payload["activityLocation"].items() if v}
    payload = {k: v for k, v in payload.items() if v != ""}
    if spec.status_code:
        payload["activityStatus"]["descriptionCode"] = spec.status_code
    if kind == "enhanced" and spec.code == "FS":
        from ml_connector_sandbox.ups.tracking import RECEIVED_BY
        payload["receivedBy"] = RECEIVED_BY
    return payload


def client_of(state: UpsState, request: Request) -> str | None:
    """The client id of the bearer token that made the request (v2 events carry it as ``x-api-key``)."""
    authorization = request.headers.get("authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    with state.lock:
        issued = state.tokens.get(token)
        return issued.client_id if issued else None


def _post(url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float = 5.0) -> int:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT,
                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback test URLs
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _v2_token(state: UpsState) -> str | None:
    url = state.knobs["track_alert_v2_token_url"]
    if not url:
        return None
    basic = base64.b64encode(f"{state.knobs['track_alert_v2_token_client_id']}:"
                             f"{state.knobs['track_alert_v2_token_client_secret']}".encode()).decode()
    request = urllib.request.Request(url, data=b"grant_type=client_credentials", method="POST",
                                     headers={"Authorization": f"Basic {basic}", "User-Agent": USER_AGENT,
                                              "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test URLs
            return json.loads(response.read()).get("access_token")
    except (OSError, ValueError):
        return None


def emit(state: UpsState) -> int:
    """Post every due event of every active subscription once; returns how many posts answered 200."""
    now = state.now()
    due: list[tuple[Subscription, dict[str, Any]]] = []
    with state.lock:
        for number, subscription in subscriptions(state).items():
            found = state.find_package(number)
            if found is None or subscription.expires_at <= now:
                continue
            shipment, package = found
            refresh(state, shipment, package)
            for event in package.events:
                key = (event.code, event.at.isoformat())
                if key in subscription.sent or event.at < subscription.subscribed_at - timedelta(seconds=1):
                    continue
                subscription.sent.add(key)
                due.append((subscription, event_payload(shipment, package, event, style=subscription.style,
                                                        kind=subscription.kind)))
    delivered = 0
    token: str | None = None
    for subscription, payload in due:
        if subscription.style == "v1":
            url, headers = subscription.url, {"credential": subscription.credential or ""}
        else:
            url = state.knobs["track_alert_v2_webhook_url"]
            token = token or _v2_token(state)
            headers = {"x-api-key": subscription.client_id or ""}
            if token:
                headers["Authorization"] = f"Bearer {token}"
        status = _post(url, payload, headers) if url else 0
        if status == 200:
            delivered += 1
            state.increment("track_alert_events_sent")
        else:
            state.increment("track_alert_events_lost")
    return delivered


class Emitter:
    """The background emitter thread (daemon; one per app)."""

    def __init__(self, state: UpsState) -> None:
        self.state = state
        self.thread = threading.Thread(target=self._run, name="ups-track-alert-emitter", daemon=True)
        self.lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while True:
            interval = self.state.knobs.get("track_alert_emit_interval_ms", 0)
            time.sleep(max(0.05, interval / 1000.0) if interval else 0.2)
            if interval and subscriptions(self.state):
                with self.lock:
                    try:
                        emit(self.state)
                    except Exception:  # the emitter never dies
                        self.state.increment("track_alert_emitter_errors")


# -- Quantum View --------------------------------------------------------------------------------------------

def _qv_record(shipment: StoredShipment, package: StoredPackage, event: TrackEvent) -> tuple[str, dict[str, Any]]:
    """One Quantum View record for a scan (``#/c/s/SubscriptionFile_*``)."""
    local = _local(event.at)
    gmt = event.at.astimezone(UTC)
    date, clock = gmt.strftime("%Y%m%d"), gmt.strftime("%H%M%S")  # read as GMT by the client (no offset field)
    address = _event_address(shipment, EVENTS[event.code])
    location = {"AddressArtifactFormat": {"PoliticalDivision2": address.get("city", ""),
                                          "PoliticalDivision1": address.get("stateProvince", ""),
                                          "CountryCode": address.get("countryCode", "")}}
    number = package.tracking_number
    if event.code == "MP":
        return "Manifest", {"Shipper": {"ShipperNumber": shipment.shipper_number},
                            "PickupDate": local.strftime("%Y%m%d"),
                            "Package": [{"TrackingNumber": number}]}
    if event.code == "OR":
        return "Origin", {"TrackingNumber": number, "ShipperNumber": shipment.shipper_number, "Date": date,
                          "Time": clock, "ActivityLocation": location}
    if event.code == "X1":
        return "Exception", {"TrackingNumber": number, "ShipperNumber": shipment.shipper_number, "Date": date,
                             "Time": clock, "StatusDescription": EVENTS["X1"].description,
                             "ActivityLocation": location}
    if event.code == "FS":
        from ml_connector_sandbox.ups.tracking import RECEIVED_BY
        return "Delivery", {"TrackingNumber": number, "ShipperNumber": shipment.shipper_number, "Date": date,
                            "Time": clock, "ActivityLocation": location,
                            "DeliveryLocation": {"AddressArtifactFormat": location["AddressArtifactFormat"],
                                                 "SignedForByName": RECEIVED_BY}}
    activity = {"DP": "DS", "OT": "OD", "MV": "VM"}.get(event.code, "DS")
    return "Generic", {"TrackingNumber": number, "ActivityType": activity, "ShipperNumber": shipment.shipper_number,
                       "Activity": {"Date": date, "Time": clock}}


def _collect_quantum_view(state: UpsState) -> None:
    """Turn scans not yet recorded into unread Quantum View records (under the state lock)."""
    store = _store(state)
    for shipment in state.shipments.values():
        for package in shipment.packages:
            refresh(state, shipment, package)
            for event in package.events:
                key = (package.tracking_number, event.code, event.at.isoformat())
                if key in store["qv_recorded"]:
                    continue
                store["qv_recorded"].add(key)
                store["qv_unread"].append(_qv_record(shipment, package, event))


def quantum_view(state: UpsState, request: Request, body: Any) -> JSONResponse:
    errors = validator("QuantumView.yaml").request_errors("/quantumview/{version}/events", "post", body)
    reject_invalid(state, request, errors)
    qv = body["QuantumViewRequest"]
    names = [s.get("Name") for s in qv.get("SubscriptionRequest") or [] if isinstance(s, dict)]
    wanted = state.knobs["quantum_view_subscription"]
    if wanted not in names:
        raise ups_error(400, "330028", f"Subscription name {names[:1]} is not a Quantum View subscription of "
                                       "this account")
    state.increment("quantum_view_requests")
    page_size = max(1, state.knobs["quantum_view_page_size"])
    with state.lock:
        _collect_quantum_view(state)
        unread = _store(state)["qv_unread"]
        page, rest = unread[:page_size], unread[page_size:]
        _store(state)["qv_unread"] = rest
    files: dict[str, list] = {}
    for kind, record in page:
        files.setdefault(kind, []).append(record)
    stamp = _local(state.now()).strftime("%y%m%d_%H%M%S001")
    response: dict[str, Any] = {
        "Response": {"TransactionReference": {"CustomerContext": qv["Request"].get("TransactionReference", {})
                                              .get("CustomerContext", "")},
                     "ResponseStatusCode": "1", "ResponseStatusDescription": "Success"},
        "QuantumViewEvents": {"SubscriberID": "MLCONNECTOR", "SubscriptionEvents": [{
            "Name": wanted, "Number": "1", "SubscriptionStatus": {"Code": "A", "Description": "Active"},
            "SubscriptionFile": [{"FileName": stamp, "StatusType": {"Code": "U", "Description": "Unread"},
                                  **files}] if files else []}]},
    }
    if rest:
        response["Bookmark"] = base64.b64encode(f"MLCONNECTOR{wanted}{stamp}".encode()).decode()
    return JSONResponse({"QuantumViewResponse": response})


# -- routes --------------------------------------------------------------------------------------------------

def router(state: UpsState) -> APIRouter:
    """Subscriptions (v1, v2) and Quantum View (mounted under ``/api``)."""
    api = APIRouter(tags=["Track Alert", "Quantum View"])

    @api.post("/track/v1/subscription/standard/package")
    async def subscribe_v1(request: Request) -> JSONResponse:
        return subscribe(state, request, await json_body(state, request), style="v1", kind="standard")

    @api.post("/track/{version}/subscription/{kind}/package")
    async def subscribe_v2(version: str, kind: str, request: Request) -> JSONResponse:
        if version != "v2" or kind not in ("standard", "enhanced"):
            raise ups_error(400, codes.VERSION_INVALID, f"unknown Track Alert version or type {version}/{kind}")
        return subscribe(state, request, await json_body(state, request), style="v2", kind=kind)

    @api.post("/quantumview/{version}/events")
    async def events(version: str, request: Request) -> JSONResponse:
        if version != "v3":
            raise ups_error(400, codes.VERSION_INVALID, f"Quantum View version {version} is not served (v3)")
        return quantum_view(state, request, await json_body(state, request))

    return api
