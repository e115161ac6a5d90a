"""Track Alert subscriptions (v1, v2), the event emitter, and Quantum View with bookmarks, in the UPS sandbox."""

from __future__ import annotations

import requests
from tests.sandbox.ups.client import UpsApi, assert_ups_error, tracking_numbers
from tests.tracking.receiver import Receiver

from ml_connector_sandbox.specs.loader import spec_validator
from ml_connector_sandbox.testing import SandboxServer

V1 = "/api/track/v1/subscription/standard/package"


def subscribe(api: UpsApi, numbers: list[str], *, url: str = "https://example.invalid/hook",
              credential: str = "s3cret", path: str = V1) -> requests.Response:
    body = {"locale": "en_US", "countryCode": "US", "trackingNumberList": numbers}
    if path == V1:
        body["destination"] = {"url": url, "credentialType": "Bearer", "credential": credential}
    return requests.post(api.base + path, json=body, headers=api.headers(), timeout=10)


def test_v1_subscription_limits_and_invalid_numbers(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    assert_ups_error(subscribe(api, [number] * 101), 400, "VSS220")  # more than 100: the whole request
    sunk = subscribe(api, [number, "1Z-NOT-A-NUMBER"])
    assert sunk.status_code == 400 and sunk.json()["invalidTrackingNumbers"] == ["1Z-NOT-A-NUMBER"]
    answer = subscribe(api, [number, "1ZZZZZZZ9999999999"])
    assert answer.status_code == 200
    assert answer.json() == {"validTrackingNumbers": [number], "invalidTrackingNumbers": ["1ZZZZZZZ9999999999"]}
    assert spec_validator("ups", "UPSTrackAlert-v1-aee93d6.yaml").component_errors(
        "TrackSubsServiceResponse", answer.json()) == []
    ups.set_knobs("ups", track_alert_fail_next=1)
    assert subscribe(api, [number]).status_code == 503
    assert ups.validation_errors("ups") == []


def test_v2_subscription_has_no_destination(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    answer = subscribe(api, [number], path="/api/track/v2/subscription/enhanced/package")
    assert answer.status_code == 200 and answer.json()["validTrackingNumbers"] == [number]
    subscriptions = api.session.get(f"{api.base}/_sandbox/ups/subscriptions", timeout=5).json()
    assert subscriptions[0]["style"] == "v2" and subscriptions[0]["url"] is None


def test_emitter_posts_each_scan_once_with_the_credential(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    with Receiver() as receiver:
        assert subscribe(api, [number], url=receiver.url, credential="opaque-1").status_code == 200
        ups.advance_ups_package(number, "delivered")
        api.session.post(f"{api.base}/_sandbox/ups/emit", timeout=10)
        api.session.post(f"{api.base}/_sandbox/ups/emit", timeout=10)  # nothing new: nothing posted again
    codes = [p["body"]["activityStatus"]["code"] for p in receiver.posts]
    assert codes == ["MP", "OR", "DP", "OT", "FS"]  # the manifest scan came within a second of the subscription
    v1 = spec_validator("ups", "UPSTrackAlert-v1-aee93d6.yaml")
    for post in receiver.posts:
        assert post["headers"]["credential"] == "opaque-1"
        assert post["headers"]["user-agent"] == "UPSPubSubTrackingService"
        assert v1.component_errors("TrackingEventRequest", post["body"]) == []
    delivered = receiver.posts[-1]["body"]
    assert delivered["actualDeliveryDate"] and delivered["activityStatus"]["type"] == "D"


def test_quantum_view_pages_with_bookmarks(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.advance_ups_package(number, "delivered")
    ups.set_knobs("ups", quantum_view_page_size=2)
    request = {"QuantumViewRequest": {"Request": {"RequestAction": "QVEvents"},
                                      "SubscriptionRequest": [{"Name": "MLConnectorQV"}]}}
    kinds, bookmarks = [], 0
    validator = spec_validator("ups", "QuantumView.yaml")
    while True:
        answer = requests.post(api.base + "/api/quantumview/v3/events", json=request, headers=api.headers(),
                               timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()["QuantumViewResponse"]
        for file in body["QuantumViewEvents"]["SubscriptionEvents"][0]["SubscriptionFile"]:
            kinds += [kind for kind in ("Manifest", "Origin", "Exception", "Delivery", "Generic")
                      for _ in file.get(kind, [])]
        if "Bookmark" not in body:
            break
        bookmarks += 1
        request["QuantumViewRequest"]["Bookmark"] = body["Bookmark"]
    assert sorted(kinds) == ["Delivery", "Generic", "Generic", "Manifest", "Origin"] and bookmarks == 2
    assert validator.request_errors("/quantumview/{version}/events", "post", request) == []
    assert ups.validation_errors("ups") == []


def test_v2_events_go_to_the_portal_url_with_the_subscribers_client_id(api: UpsApi, ups: SandboxServer) -> None:
    from ml_connector_sandbox.credentials import UPS_CLIENT_ID

    number = tracking_numbers(api.ship())[0]
    with Receiver() as receiver:
        ups.set_knobs("ups", track_alert_v2_webhook_url=receiver.url)
        assert subscribe(api, [number], path="/api/track/v2/subscription/enhanced/package").status_code == 200
        ups.advance_ups_package(number, "delivered")
        api.session.post(f"{api.base}/_sandbox/ups/emit", timeout=10)
    assert receiver.posts and {p["headers"]["x-api-key"] for p in receiver.posts} == {UPS_CLIENT_ID}
    assert receiver.posts[-1]["body"]["receivedBy"] == "JANE DOE"  # enhanced subscriptions carry who signed


def test_the_emitter_follows_the_simulated_clock_on_its_own(api: UpsApi, ups: SandboxServer) -> None:
    import time

    number = tracking_numbers(api.ship())[0]
    with Receiver() as receiver:
        assert subscribe(api, [number], url=receiver.url).status_code == 200
        # one stage per simulated hour; move the clock four hours on and let the emitter thread run
        ups.set_knobs("ups", tracking_auto_advance_seconds=3600, clock_offset_seconds=4 * 3600,
                      track_alert_emit_interval_ms=100)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                p["body"]["activityStatus"]["code"] == "FS" for p in receiver.posts):
            time.sleep(0.2)
        ups.set_knobs("ups", track_alert_emit_interval_ms=0)
    assert [p["body"]["activityStatus"]["code"] for p in receiver.posts][-1] == "FS"
    api._token = None  # the first token expired four simulated hours ago
    assert api.track(number)["package"][0]["currentStatus"]["code"] == "FS"  # Track follows the same shipment
