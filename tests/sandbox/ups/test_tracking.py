"""UPS Track in the sandbox: timelines through every status, warnings, required headers."""

from __future__ import annotations

import base64

import pytest
import requests
from tests.sandbox.ups.client import UpsApi, assert_ups_error, tracking_numbers

from ml_connector_sandbox.testing import SandboxServer


# -- Track -----------------------------------------------------------------------------------------
def test_track_by_number_through_every_status(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    package = api.track(number)["package"][0]
    assert package["trackingNumber"] == number
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("M", "MP")
    assert package["currentStatus"]["description"] == "Shipper created a label, UPS has not received the package yet."
    assert package["deliveryDate"][0]["type"] == "SDD"

    ups.advance_ups_package(number, "in_transit")
    package = api.track(number)["package"][0]
    assert [a["status"]["code"] for a in package["activity"]] == ["DP", "OR", "MP"]  # most recent first
    assert package["currentStatus"]["type"] == "I"

    ups.advance_ups_package(number, "out_for_delivery")
    assert api.track(number)["package"][0]["currentStatus"]["code"] == "OT"

    ups.advance_ups_package(number, "delivered")
    package = api.track(number, returnSignature="true")["package"][0]
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("D", "FS")
    assert package["deliveryInformation"]["receivedBy"] == "JANE DOE"
    assert base64.b64decode(package["deliveryInformation"]["signature"]["image"]).startswith(b"GIF")
    assert package["deliveryDate"][0]["type"] == "DEL"
    for activity in package["activity"]:
        assert activity["gmtOffset"] == "-05:00"
        assert len(activity["date"]) == 8 and len(activity["time"]) == 6


def test_track_exception_is_a_weather_delay(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.advance_ups_package(number, "in_transit")
    ups.advance_ups_package(number, "exception")
    package = api.track(number)["package"][0]
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("X", "X1")
    assert {entry["type"] for entry in package["deliveryDate"]} == {"SDD", "RDD"}


def test_advance_refuses_to_go_back(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.advance_ups_package(number, "delivered")
    with pytest.raises(requests.HTTPError, match="409"):
        ups.advance_ups_package(number, "in_transit")


def test_auto_advance_knob_moves_packages_along_with_the_clock(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.set_knobs("ups", tracking_auto_advance_seconds=600, clock_offset_seconds=3 * 600 + 1)
    assert api.track(number)["package"][0]["currentStatus"]["code"] == "FS"


def test_unknown_number_is_tw0001_at_http_200(api: UpsApi) -> None:
    shipment = api.track("1ZA1B2C30399999990")
    assert shipment["warnings"] == [{"code": "TW0001", "message": "Tracking Information Not Found"}]
    assert "package" not in shipment


def test_unknown_reference_is_tw0001_at_http_200(api: UpsApi) -> None:
    assert api.track_reference("NO-SUCH-ORDER")[0]["warnings"][0]["code"] == "TW0001"


def test_track_requires_trans_id_and_transaction_src(api: UpsApi) -> None:
    response = api.session.get(f"{api.base}/api/track/v1/details/1ZA1B2C30399999990",
                               headers={"Authorization": f"Bearer {api.token()}"}, timeout=10)
    error = assert_ups_error(response, 400, "TV1001")
    assert "transId" in error["message"] and "transactionSrc" in error["message"]


def test_track_rejects_a_too_short_inquiry_number(api: UpsApi) -> None:
    assert_ups_error(api.track_response("1Z1"), 400, "TV1002")
