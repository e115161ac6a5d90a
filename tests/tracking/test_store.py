"""Per-package tracking state in the ledger (SQLite and PostgreSQL) and the tracking settings' checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ml_connector.ledger import Ledger
from ml_connector.models import TrackingStatus as S
from ml_connector.settings import PipelineSettings

T = datetime(2026, 11, 20, 12, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T.replace(minute=minutes)


def test_an_older_event_never_overwrites_a_newer_one_and_final_stays_final(ledger_url):
    ledger = Ledger(ledger_url)
    n = "1ZSTORE000000000001"
    assert ledger.record_package_status(n, S.OUT_FOR_DELIVERY, source="webhook", event_at=at(30), now=1.0)
    assert not ledger.record_package_status(n, S.IN_TRANSIT, source="poll", event_at=at(10), now=2.0)
    state = ledger.package_tracking([n])[n]
    assert (state.status, state.last_source, state.pushed_at, state.polled_at) == ("out_for_delivery", "webhook",
                                                                                  1.0, 2.0)
    assert ledger.record_package_status(n, S.DELIVERED, source="quantum_view", event_at=at(20),
                                        delivered_at=at(20).isoformat(), received_by="JANE DOE", now=3.0)
    assert not ledger.record_package_status(n, S.IN_TRANSIT, source="webhook", event_at=at(50), now=4.0)
    state = ledger.package_tracking([n])[n]
    assert state.final and state.received_by == "JANE DOE" and state.delivered_at == at(20).isoformat()


def test_subscriptions_are_recorded_renewed_and_marked(ledger_url):
    ledger = Ledger(ledger_url)
    numbers = ["1ZSUBS0000000000001", "1ZSUBS0000000000002"]
    ledger.record_subscriptions(numbers, pipeline="p", expires_at=100.0, style="v1", now=1.0)
    ledger.mark_subscriptions(numbers[1:], status="failed", error="UPS answered 503", quantum_view=True)
    found = ledger.subscriptions(numbers)
    assert found[numbers[0]].active(50.0) and not found[numbers[0]].active(100.0)
    assert found[numbers[1]].status == "failed" and found[numbers[1]].quantum_view
    ledger.record_subscriptions(numbers[1:], pipeline="p", expires_at=200.0, style="v1", now=5.0)
    renewed = ledger.subscriptions(numbers[1:])[numbers[1]]
    assert renewed.status == "active" and not renewed.quantum_view and renewed.error is None


def test_track_alert_settings_are_checked_at_parse_time():
    with pytest.raises(ValidationError, match="track_alert_url"):
        PipelineSettings(erp="business_central", track_alert="v1")
    with pytest.raises(ValidationError, match="https"):
        PipelineSettings(erp="business_central", track_alert="v1", track_alert_url="http://example.com/hook")
    with pytest.raises(ValidationError, match="standard"):
        PipelineSettings(erp="business_central", track_alert="v1", track_alert_url="https://x.example/h",
                         track_alert_kind="enhanced")
    with pytest.raises(ValidationError):
        PipelineSettings(erp="business_central", tracking_max_age_days=121)
    assert PipelineSettings(erp="business_central", track_alert="v2").track_alert_url is None


def test_processed_inbox_rows_are_pruned_after_a_month(ledger_url):
    import sqlalchemy as sa

    from ml_connector.ledger import schema

    ledger = Ledger(ledger_url)
    assert ledger.inbox_put("ups", "{}", dedupe_key="old")
    assert ledger.inbox_put("ups", "{}", dedupe_key="new")
    assert ledger.inbox_put("ups", "{}", dedupe_key="pending")
    old, new, _pending = (r["id"] for r in ledger.inbox_pending("ups"))
    ledger.inbox_done(old)
    ledger.inbox_done(new)
    with ledger.write() as conn:
        conn.execute(schema.webhook_inbox.update().where(schema.webhook_inbox.c.id == old)
                     .values(processed_at=datetime(2026, 9, 1, tzinfo=UTC)))
    assert ledger.inbox_prune("ups") == 1
    with ledger.read() as conn:
        assert sorted(conn.execute(sa.select(schema.webhook_inbox.c.dedupe_key)).scalars()) == ["new", "pending"]
