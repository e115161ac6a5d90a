"""UPS Track Alert subscriptions (UPSTrackAlert.yaml v2, UPSTrackAlert-v1-aee93d6.yaml v1): request bodies,
answers, batching. Pure: the hook sends them.

- v1: ``POST /api/track/v1/subscription/standard/package`` with ``destination{url, credentialType, credential}``:
  UPS posts each event to ``url`` with the header ``credential: <credential>`` (``#/c/s/TrackSubsServiceRequest``,
  ``#/c/s/Destination``).
- v2: ``POST /api/track/v2/subscription/{standard|enhanced}/package`` without a destination: the webhook URL and
  its credentials are registered in the UPS portal (``#/c/s/PackageSubscriptionRequest``).

Both take at most 100 numbers (``maxItems: 100``; more is VSS220, the whole request rejected), answer
``{validTrackingNumbers, invalidTrackingNumbers}``, and a subscription lasts 14 days (``#/info/description``).
A number that breaks the item pattern makes the request a 400 that lists it in ``invalidTrackingNumbers``: the
caller resubmits the others (:func:`split_invalid`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from ml_connector.carriers.ups.normalise import as_list, strip_str

#: the webhook inbox source of Track Alert events (the route stores them, poll_tracking reads them)
INBOX_SOURCE = "ups"

#: numbers per subscription request (``trackingNumberList`` ``maxItems``)
MAX_NUMBERS = 100
#: how long UPS pushes events for a subscribed number
SUBSCRIPTION_DAYS = 14
#: ``trackingNumberList`` item pattern (both versions)
TRACKING_NUMBER = re.compile(r"^1Z[0-9A-Z]{16}$|^1R[0-9A-Z]{14}$|^1R[0-9A-Z]{26}$")

Style = Literal["v1", "v2"]


def subscription_path(style: Style, kind: Literal["standard", "enhanced"] = "standard") -> str:
    """The subscription endpoint (v1 knows only ``standard``)."""
    if style == "v1":
        return "/api/track/v1/subscription/standard/package"
    return f"/api/track/v2/subscription/{kind}/package"


def batches(numbers: Iterable[str], size: int = MAX_NUMBERS) -> Iterator[list[str]]:
    """Numbers in request-sized batches, in order, duplicates dropped."""
    batch: list[str] = []
    seen: set[str] = set()
    for number in numbers:
        number = number.strip().upper()
        if number in seen:
            continue
        seen.add(number)
        batch.append(number)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def split_invalid(numbers: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(valid, invalid)`` by the spec's item pattern: an invalid number is never sent (it would sink its batch)."""
    valid, invalid = [], []
    for number in numbers:
        (valid if TRACKING_NUMBER.match(number.strip().upper()) else invalid).append(number.strip().upper())
    return valid, invalid


def build_subscription_request(numbers: list[str], *, style: Style, url: str | None = None,
                               credential: str | None = None, credential_type: str = "Bearer",
                               country_code: str = "US") -> dict[str, Any]:
    """The request body of one batch.

    :param numbers: at most :data:`MAX_NUMBERS` tracking numbers.
    :param style: ``v1`` (destination in the body) or ``v2`` (destination registered in the portal).
    :param url: v1: the https URL UPS posts events to.
    :param credential: v1: the opaque value UPS sends back in the ``credential`` header.
    :param credential_type: v1: free text naming the credential (``#/c/s/Destination/properties/credentialType``).
    :raises ValueError: more than 100 numbers, or v1 without url or credential.
    """
    if len(numbers) > MAX_NUMBERS:
        raise ValueError(f"{len(numbers)} tracking numbers in one subscription request; UPS takes at most "
                         f"{MAX_NUMBERS}")
    body: dict[str, Any] = {"locale": "en_US", "countryCode": country_code, "trackingNumberList": list(numbers)}
    if style == "v1":
        if not url or not credential:
            raise ValueError("Track Alert v1 needs the webhook URL and the credential")
        body["destination"] = {"url": url, "credentialType": credential_type, "credential": credential}
    return body


def parse_subscription_response(body: Any) -> tuple[list[str], list[str]]:
    """``(valid, invalid)`` numbers of a subscription answer (200, or the 400 that lists invalid numbers)."""
    if not isinstance(body, Mapping):
        return [], []
    valid = [n for n in (strip_str(v) for v in as_list(body.get("validTrackingNumbers"))) if n]
    invalid = [n for n in (strip_str(v) for v in as_list(body.get("invalidTrackingNumbers"))) if n]
    return [n.upper() for n in valid], [n.upper() for n in invalid]
