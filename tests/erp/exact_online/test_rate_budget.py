"""The shared call budget in the ledger (SQLite and PostgreSQL): announced limits spent locally, waits until the
reset, a conservative own window before any header, the daily reserve, errors counted per hour."""

from __future__ import annotations

from ml_connector.ledger import rate_budget

NAME = "exact_online:test:1"


def test_before_any_header_an_own_window_of_the_limit_counts(ledger):
    now = 1000.0
    for _ in range(59):
        assert rate_budget.take_call(ledger, NAME, now=now, per_minute=60).wait == 0
    slot = rate_budget.take_call(ledger, NAME, now=now + 1, per_minute=60)  # one slot kept in reserve
    assert 58 < slot.wait <= 59
    assert rate_budget.take_call(ledger, NAME, now=now + 60, per_minute=60).wait == 0  # a new window


def test_announced_remaining_is_spent_then_the_reset_is_awaited(ledger):
    now = 5000.0
    rate_budget.observe(ledger, NAME, minute=(3, now + 20))
    assert rate_budget.take_call(ledger, NAME, now=now, per_minute=60).wait == 0  # 3 -> 2
    assert rate_budget.take_call(ledger, NAME, now=now, per_minute=60).wait == 0  # 2 -> 1
    assert rate_budget.take_call(ledger, NAME, now=now, per_minute=60).wait == 20  # 1 left: the reserve
    # an answer to an older call of the same window cannot raise the count again
    rate_budget.observe(ledger, NAME, minute=(2, now + 20))
    assert rate_budget.take_call(ledger, NAME, now=now + 1, per_minute=60).wait == 19
    # after the reset the next answer's headers rule again
    rate_budget.observe(ledger, NAME, minute=(59, now + 80))
    assert rate_budget.take_call(ledger, NAME, now=now + 21, per_minute=60).wait == 0


def test_the_daily_budget_keeps_a_reserve(ledger):
    now = 9000.0
    rate_budget.observe(ledger, NAME, day=(50, now + 3600))
    slot = rate_budget.take_call(ledger, NAME, now=now, per_minute=60)
    assert slot.day_spent_until == now + 3600


def test_errors_are_counted_per_hour(ledger):
    assert [rate_budget.count_error(ledger, NAME, now=100.0 + i) for i in range(3)] == [1, 2, 3]
    assert rate_budget.count_error(ledger, NAME, now=100.0 + 3600) == 1
