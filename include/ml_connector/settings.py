"""Pipeline settings: one validated record per DAG, read from ``include/pipelines.yaml`` at parse time.

Parsing touches no network and no database. A wrong setting raises :class:`ConfigurationError` naming the file,
the pipeline and the setting, so the DAG shows an import error that says what to fix.

:class:`PipelineSettings` holds what every pipeline has; each ERP extends it with its own model (named in
:mod:`ml_connector.registry`), and the carrier checks its own settings (``ship_method_map``).
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ml_connector import registry
from ml_connector.errors import ConfigurationError
from ml_connector.models import Address

SETTINGS_ENV = "ML_CONNECTOR_PIPELINES"


class PipelineSettings(BaseModel):
    """Everything one ERP -> carrier pipeline can be told. Every field has a default except ``erp``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    erp: str
    carrier: str = Field(default_factory=lambda: next(iter(registry.CARRIERS)))
    description: str | None = None
    # connections (default: the registry's connection id of the ERP and of the carrier)
    erp_conn_id: str | None = None
    carrier_conn_id: str | None = Field(None, validation_alias=AliasChoices("carrier_conn_id", "ups_conn_id"))
    ledger_conn_id: str = "ml_connector_ledger"
    # schedule
    schedule: str = "*/15 * * * *"
    timezone: str = "UTC"
    start_date: datetime = datetime(2026, 11, 1)
    catchup: bool = False
    overlap_minutes: int = Field(5, ge=0, le=24 * 60)
    # shipping
    ship_from: Address | None = None
    ship_method_map: dict[str, str] = Field(default_factory=dict)
    reference_fields: list[Literal["number", "customer_reference"]] = Field(
        default_factory=lambda: ["number", "customer_reference"], min_length=1, max_length=2)
    validate_addresses: bool = True
    negotiated_rates: bool = True
    default_weight_per_unit: Decimal | None = Field(None, gt=0)
    item_weights: dict[str, Decimal] = Field(default_factory=dict)
    weight_unit: Literal["LBS", "KGS"] = "LBS"
    label_folder: str | None = None
    # international shipments: ReasonForExport of the commercial invoice UPS needs for goods leaving the customs
    # area (SALE, GIFT, SAMPLE, RETURN, REPAIR, INTERCOMPANYDATA or another reason up to 20 characters)
    reason_for_export: str = Field("SALE", min_length=1, max_length=20)
    # country of origin of the goods on commercial invoices, for lines whose ERP record has none (item code ->
    # ISO country, then the default); unset, such an order is quarantined naming the line's origin_country
    default_origin_country: str | None = None
    item_origin_countries: dict[str, str] = Field(default_factory=dict)
    # write-back and tracking
    writeback: bool = True
    track: bool = True
    # the run's verdict: orders newly quarantined (or label_uncertain) by a run make it fail at `report`
    fail_run_on_quarantine: bool = True
    # lanes and retries
    max_lanes: int = Field(50, ge=1, le=1024)
    lane_concurrency: int = Field(4, ge=1, le=32)
    # throughput (docs/architecture.md, "Throughput"): a run of up to `lane_per_order_up_to` orders gets one lane
    # per order; a bigger one gets `parallel_lanes` lanes. `api_budget` is the calls in flight at once per API
    # account (carrier or ERP connection), held in the ledger and shared by every task calling that account
    # (operators/in_flight.py): lanes take turns at it
    api_budget: int = Field(16, ge=1, le=256)
    lane_per_order_up_to: int = Field(16, ge=0, le=1024)
    parallel_lanes: int = Field(4, ge=1, le=1024)
    # -- Airflow pools per external API (README "Sizing a bigger deployment") ----------------------------------
    # the pool of the steps that call the carrier (validate_address, create_shipment, poll_tracking) and of those
    # that call the ERP (extract_orders, writeback), one slot per task: a pool's slots = how many of these tasks
    # call that API at once across every DAG naming it (several DAGs on one UPS account name one pool). None:
    # Airflow's default_pool. A named pool must exist (airflow_settings.yaml, `airflow pools set`): the scheduler
    # never runs a task whose pool does not exist (tests/dags/test_integrity.py checks the shipped files)
    carrier_pool: str | None = Field(None, min_length=1, max_length=256)
    erp_pool: str | None = Field(None, min_length=1, max_length=256)
    # -- end of pool settings -----------------------------------------------------------------------------------
    claim_ttl_seconds: int = Field(900, ge=30)
    # an order whose label purchase got no clear answer (label_uncertain) is looked up by reference for this
    # long, with backoff from lookup_backoff_seconds, then left to a person; keep it well above the minutes
    # UPS's reference index can lag behind a purchase
    settle_window_hours: float = Field(6.0, ge=0, le=24 * 30)
    lookup_backoff_seconds: float = Field(60.0, ge=0, le=3600)
    retries: int = Field(3, ge=0, le=20)
    retry_delay_seconds: int = Field(30, ge=1)
    max_retry_delay_seconds: int = Field(900, ge=1)
    owner: str = "ml-connector"
    tags: list[str] = Field(default_factory=list)

    # -- tracking (poll_tracking: what is polled and when, push subscriptions, Quantum View) -----------------
    # a package is polled only once it is this old (a label minutes old has no scan yet)...
    tracking_min_age_minutes: float = Field(60.0, ge=0, le=7 * 24 * 60)
    # ...at most once per this interval, and not while a pushed event (webhook, Quantum View) is this fresh
    tracking_poll_interval_minutes: float = Field(55.0, ge=0, le=7 * 24 * 60)
    tracking_push_fresh_hours: float = Field(24.0, ge=0, le=14 * 24)
    # packages open longer than this are reported once and no longer polled (UPS keeps tracking data 120 days)
    tracking_max_age_days: float = Field(30.0, gt=0, le=120)
    # a delivery pushed without who signed costs one Track API call for the proof of delivery
    tracking_proof_of_delivery: bool = True
    # Track Alert push: off (poll only), v1 (our URL + credential in each subscription) or v2 (webhook
    # registered in the carrier's portal); subscriptions are renewed this many days after they were made
    track_alert: Literal["off", "v1", "v2"] = "off"
    track_alert_url: str | None = None
    track_alert_kind: Literal["standard", "enhanced"] = "standard"
    track_alert_renew_after_days: float = Field(12.0, gt=0, lt=14)
    # Quantum View: the subscription name to read every run (None: only numbers whose renewal failed, and
    # only when quantum_view_fallback_subscription names one)
    quantum_view_subscription: str | None = Field(None, min_length=1, max_length=21)
    quantum_view_fallback_subscription: str | None = Field(None, min_length=1, max_length=21)

    @model_validator(mode="after")
    def _track_alert_url(self) -> PipelineSettings:
        url = self.track_alert_url or ""
        loopback = url.startswith(("http://127.0.0.1:", "http://localhost:"))  # the sandbox's emitter
        if self.track_alert == "v1" and not (url.startswith("https://") or loopback):
            raise ValueError("track_alert v1 needs track_alert_url: the public https URL of "
                             "/ml-connector/webhooks/<carrier>/track-alert")
        if self.track_alert == "v1" and self.track_alert_kind != "standard":
            raise ValueError("track_alert v1 knows only track_alert_kind 'standard'")
        return self
    # -- end of tracking settings -------------------------------------------------------------------------

    @field_validator("erp")
    @classmethod
    def _known_erp(cls, value: str) -> str:
        try:
            registry.erp(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _carrier_settings(self) -> PipelineSettings:
        try:
            carrier = registry.carrier(self.carrier).load("implementation")
            carrier.check_ship_method_map(self.ship_method_map)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return self

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        # the Task SDK timetable accepts any string; the scheduler's validates the expression
        from airflow.sdk import CronDataIntervalTimetable
        from airflow.serialization.encoders import coerce_to_core_timetable

        try:
            coerce_to_core_timetable(CronDataIntervalTimetable(value, timezone="UTC")).validate()
        except Exception as exc:
            raise ValueError(f"'{value}' is not a valid cron expression ({exc})") from None
        return value

    @field_validator("item_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [k for k, v in value.items() if v <= 0]
        if bad:
            raise ValueError(f"weights must be > 0 (items {', '.join(bad)})")
        return value

    @field_validator("default_origin_country")
    @classmethod
    def _origin_country(cls, value: str | None) -> str | None:
        from ml_connector.models import iso_country

        if value is not None and iso_country(value) is None:
            raise ValueError(f"{value!r} is not an ISO 3166 two-letter country code")
        return value.upper() if value else None

    @field_validator("item_origin_countries")
    @classmethod
    def _origin_countries(cls, value: dict[str, str]) -> dict[str, str]:
        from ml_connector.models import iso_country

        bad = [k for k, v in value.items() if iso_country(v) is None]
        if bad:
            raise ValueError(f"not ISO 3166 two-letter country codes for items {', '.join(bad)}")
        return {str(k).strip().upper(): v.upper() for k, v in value.items()}

    @model_validator(mode="after")
    def _retry_delays(self) -> PipelineSettings:
        if self.max_retry_delay_seconds < self.retry_delay_seconds:
            raise ValueError("max_retry_delay_seconds must be >= retry_delay_seconds")
        return self

    @property
    def erp_connection_id(self) -> str:
        """The ERP connection id: the ``erp_conn_id`` setting, else the registry's default for the ERP."""
        return self.erp_conn_id or registry.erp(self.erp).default_conn_id

    @property
    def carrier_connection_id(self) -> str:
        """The carrier connection id: the ``carrier_conn_id`` (or ``ups_conn_id``) setting, else the registry's
        default for the carrier."""
        return self.carrier_conn_id or registry.carrier(self.carrier).default_conn_id

    def label_root(self) -> str:
        if self.label_folder:
            return self.label_folder
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        return f"file://{home}/ml_connector_labels"


def default_settings_file() -> Path:
    """``$ML_CONNECTOR_PIPELINES``, else ``include/pipelines.yaml`` of the Astro project."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "pipelines.yaml"


def load_settings(pipeline_id: str, path: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> PipelineSettings:
    """Read and validate one pipeline's settings.

    :param pipeline_id: the top-level key in the file (also the DAG id).
    :param path: the YAML file; default :func:`default_settings_file`.
    :param overrides: values that win over the file (tests, programmatic DAGs).
    :raises ConfigurationError: the file, the pipeline or a setting is wrong; the message names it.
    """
    path = Path(path) if path else default_settings_file()
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigurationError(f"pipeline settings file {path} does not exist (set {SETTINGS_ENV})") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None
    raw = document.get(pipeline_id)
    if raw is None:
        raise ConfigurationError(f"{path}: no pipeline '{pipeline_id}' (found: {', '.join(document) or 'none'})")
    values = {**raw, **(overrides or {})}
    model: type[PipelineSettings] = PipelineSettings
    if isinstance(values.get("erp"), str) and values["erp"] in registry.ERPS:
        model = registry.erp(values["erp"]).load("settings")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"setting '{'.'.join(str(p) for p in err['loc']) or '(pipeline)'}': {err['msg']}"
            for err in exc.errors())
        raise ConfigurationError(f"{path}: pipeline '{pipeline_id}': {problems}") from None
