"""State of the UPS sandbox: knobs, counters, issued tokens and the shipments it created."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from ml_connector_sandbox.common import SandboxState, VendorError
from ml_connector_sandbox.ups.errors import TOO_MANY_REQUESTS, ups_error_from


@dataclass
class IssuedToken:
    """A bearer token the sandbox handed out."""

    client_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass
class TrackEvent:
    """One scan of a package: ``code`` is a key of ``ups_tracking.EVENTS`` ("MP", "OR", "FS"...)."""

    code: str
    at: datetime


@dataclass
class StoredPackage:
    """One label: tracking number, package-level references, weight and its scan history."""

    tracking_number: str
    references: list[str]
    weight: str
    weight_unit: str
    events: list[TrackEvent] = field(default_factory=list)
    voided: bool = False


@dataclass
class StoredShipment:
    """One successful Ship call, as the reference search and the tracking answers need it."""

    shipment_id: str
    shipper_number: str
    service_code: str
    origin: dict[str, Any]        # UPS Address of ShipFrom, else of Shipper
    ship_to: dict[str, Any]       # the request's ShipTo (Name, AttentionName, Address...)
    references: list[str]         # shipment-level ReferenceNumber values
    packages: list[StoredPackage]
    created_at: datetime
    label_format: str

    @property
    def voided(self) -> bool:
        """True once every package is voided."""
        return all(package.voided for package in self.packages)

    def package_references(self, package: StoredPackage) -> list[str]:
        """References printed for a package: its own, then the shipment-level ones."""
        return package.references + [ref for ref in self.references if ref not in package.references]


class UpsState(SandboxState):
    """Knobs, counters, tokens and shipments of the UPS sandbox."""

    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "token_ttl_seconds": 3599,         # expires_in of new tokens; they stop working after it
        "token_daily_quota": 250,          # tokens per sandbox-clock UTC day, then 429 10429
        "expire_all_tokens": False,        # action: true expires every issued token now, then reads false
        "crash_after_label_next": 0,       # next N Ship calls store the label, then drop the connection
        "error_after_label_next": 0,       # next N Ship calls store the label, then answer HTTP 500
        "ship_answer_delay_ms": 0,         # Ship stores the label, then waits this long before answering
        "reference_lookup_error_next": 0,  # next N track-by-reference calls answer HTTP 400 (TV1002)
        "reference_index_lag_seconds": 0,  # track-by-reference shows a label only this long (sandbox clock)
                                           # after it was created, as UPS's reference index lags a purchase
        "xav_single_object": False,        # XAV: a single Candidate (and its AddressLine) as an object
        "package_results_single_object": False,  # Ship: PackageResults as an object when one package
        "tracking_auto_advance_seconds": 0,  # >0: packages move one stage per N seconds after the label
        # Track Alert and Quantum View (track_alert.py)
        "track_alert_fail_next": 0,        # next N subscription calls answer 503
        "track_alert_emit_interval_ms": 0,  # >0: the emitter posts due events this often (0: POST /_sandbox/ups/emit)
        "track_alert_v2_webhook_url": "",  # v2: the webhook URL "registered in the UPS portal"
        "track_alert_v2_token_url": "",    # v2: the subscriber's token URL (clientOauth2), "" = send no token
        "track_alert_v2_token_client_id": "",
        "track_alert_v2_token_client_secret": "",
        "quantum_view_subscription": "MLConnectorQV",  # the account's Quantum View subscription name
        "quantum_view_page_size": 50,      # records per answer; more left = a Bookmark
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "tokens_issued": 0,
        "token_quota_exceeded": 0,
        "auth_failures": 0,
        "xav_requests": 0,
        "ship_requests": 0,
        "shipments_created": 0,
        "labels_created": 0,
        "labels_by_reference": {},
        "ship_errors_after_label": 0,
        "voids": 0,
        "track_requests": 0,
        "track_reference_requests": 0,
        "track_alert_requests": 0,
        "track_alert_subscriptions": 0,
        "track_alert_rejected_batches": 0,
        "track_alert_events_sent": 0,
        "track_alert_events_lost": 0,
        "track_alert_emitter_errors": 0,
        "quantum_view_requests": 0,
    }

    def __init__(self) -> None:
        # Tracking-number serials survive reset(): a client's ledger may outlive one test's state,
        # and a real 1Z number is never reused.
        self._serials = itertools.count(1)
        super().__init__()

    def reset_vendor_data(self) -> None:
        """Forget tokens and shipments."""
        self.tokens: dict[str, IssuedToken] = {}
        self.tokens_per_day: dict[str, int] = {}
        self.shipments: dict[str, StoredShipment] = {}
        self.packages: dict[str, tuple[StoredShipment, StoredPackage]] = {}

    def on_knobs_changed(self, changed: dict[str, Any]) -> None:
        """``expire_all_tokens`` is an action: expire every token now and read false again."""
        if changed.get("expire_all_tokens"):
            now = self.now()
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, now)
            self.knobs["expire_all_tokens"] = False

    def is_api_path(self, path: str) -> bool:
        """Only ``/api/...`` routes are delayed and throttled; the token endpoint has its own quota."""
        return path.startswith("/api/")

    def rate_limit_error(self) -> VendorError:
        """UPS 429: code 10429 and no Retry-After (UPS sends no rate-limit headers)."""
        return ups_error_from(429, TOO_MANY_REQUESTS)

    # -- tokens -----------------------------------------------------------------------------------
    def issue_token(self, client_id: str) -> tuple[str, IssuedToken] | None:
        """Issue a token if today's quota allows it; None when the quota is used up."""
        with self.lock:
            now = self.now()
            day = now.strftime("%Y%m%d")
            if self.tokens_per_day.get(day, 0) >= self.knobs["token_daily_quota"]:
                return None
            self.tokens_per_day[day] = self.tokens_per_day.get(day, 0) + 1
            ttl = timedelta(seconds=self.knobs["token_ttl_seconds"])
            record = IssuedToken(client_id=client_id, issued_at=now, expires_at=now + ttl)
            access_token = secrets.token_urlsafe(48)
            self.tokens[access_token] = record
            self.counters["tokens_issued"] += 1
            return access_token, record

    def token_is_valid(self, access_token: str) -> bool:
        """True for a token this sandbox issued that has not expired on the sandbox clock."""
        with self.lock:
            record = self.tokens.get(access_token)
            return record is not None and self.now() < record.expires_at

    # -- shipments --------------------------------------------------------------------------------
    def next_serial(self) -> int:
        """A process-wide increasing serial for tracking numbers."""
        with self.lock:
            return next(self._serials)

    def store_shipment(self, shipment: StoredShipment) -> None:
        """Keep a shipment and count its labels per reference value."""
        with self.lock:
            self.shipments[shipment.shipment_id] = shipment
            self.counters["shipments_created"] += 1
            for package in shipment.packages:
                self.packages[package.tracking_number] = (shipment, package)
                self.counters["labels_created"] += 1
                for reference in shipment.package_references(package):
                    per_reference = self.counters["labels_by_reference"]
                    per_reference[reference] = per_reference.get(reference, 0) + 1

    def find_package(self, tracking_number: str) -> tuple[StoredShipment, StoredPackage] | None:
        """The shipment and package of a tracking number this sandbox created."""
        with self.lock:
            return self.packages.get(tracking_number.strip().upper())
