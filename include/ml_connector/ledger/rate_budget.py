"""Rows of ``ml_rate_budgets``: an API's call budget shared by every task and worker through the ledger.

Each call first takes a slot (:func:`take_call`, one short write transaction, no HTTP inside): while the vendor's
last rate-limit headers are current, their remaining count is spent locally; before any headers (or after their
reset) a conservative window of ``per_minute`` calls counts the calls itself. When no slot is left the caller
is told how long to wait (the announced reset). Each answer's headers are recorded (:func:`observe`), and error
answers are counted per hour (:func:`count_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase


@dataclass(frozen=True)
class Slot:
    """Outcome of :func:`take_call`: ``wait`` seconds before trying again (0: the call may go now), and whether
    the daily budget is spent (``day_spent_until``: epoch seconds of its reset)."""

    wait: float = 0.0
    day_spent_until: float | None = None


def _row(ledger: LedgerBase, conn, name: str):
    t = schema.rate_budgets
    conn.execute(ledger._insert(t).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    return conn.execute(ledger._lock(sa.select(t).where(t.c.name == name))).mappings().one()


def take_call(ledger: LedgerBase, name: str, *, now: float, per_minute: int, reserve: int = 1,
              day_reserve: int = 50) -> Slot:
    """Take one call slot of ``name``, or say how long to wait.

    :param per_minute: the vendor's per-minute limit, used while no headers are current.
    :param reserve: slots a minute left unused (other apps of the same company share the limit).
    :param day_reserve: calls of the daily budget kept back.
    """
    t = schema.rate_budgets
    with ledger.write() as conn:
        row = _row(ledger, conn, name)
        if row["day_remaining"] is not None and (row["day_reset"] or 0) > now \
                and row["day_remaining"] <= day_reserve:
            return Slot(day_spent_until=row["day_reset"])
        values: dict[str, object] = {}
        if row["minute_remaining"] is not None and (row["minute_reset"] or 0) > now:
            if row["minute_remaining"] <= reserve:
                return Slot(wait=max(row["minute_reset"] - now, 0.05))
            values["minute_remaining"] = row["minute_remaining"] - 1
        else:
            start, calls = row["window_start"], row["window_calls"]
            if start is None or now - start >= 60.0:
                start, calls = now, 0
            if calls >= per_minute - reserve:
                return Slot(wait=max(start + 60.0 - now, 0.05))
            values.update(window_start=start, window_calls=calls + 1)
        if row["day_remaining"] is not None and (row["day_reset"] or 0) > now:
            values["day_remaining"] = row["day_remaining"] - 1
        conn.execute(t.update().where(t.c.name == name).values(**values))
    return Slot()


def observe(ledger: LedgerBase, name: str, *, minute: tuple[int, float] | None = None,
            day: tuple[int, float] | None = None, same_window: float = 0.5, now: float | None = None) -> None:
    """Record the vendor's announced ``(remaining, reset epoch seconds)`` per minute and per day. An answer to an
    older call never raises a count for the same window (the lower count wins).

    :param same_window: resets closer than this many seconds are the same window (0.5 for a reset announced as an
        epoch time; more when it is announced in whole seconds from now, as ShipStation's is).
    :param now: when given, a stored window whose reset has passed is never merged with (a new window began).
    """
    t = schema.rate_budgets
    with ledger.write() as conn:
        row = _row(ledger, conn, name)
        values: dict[str, object] = {}
        for prefix, announced in (("minute", minute), ("day", day)):
            if announced is None:
                continue
            remaining, reset = announced
            stored_remaining, stored_reset = row[f"{prefix}_remaining"], row[f"{prefix}_reset"]
            current = now is None or (stored_reset is not None and stored_reset > now)
            if stored_reset is not None and abs(stored_reset - reset) < same_window and stored_remaining is not None \
                    and current:
                remaining = min(remaining, stored_remaining)
            values[f"{prefix}_remaining"], values[f"{prefix}_reset"] = remaining, reset
        if values:
            conn.execute(t.update().where(t.c.name == name).values(**values))


def count_error(ledger: LedgerBase, name: str, *, now: float, window: float = 3600.0) -> int:
    """Count one error answer; returns how many were counted in the current ``window`` (an hour)."""
    t = schema.rate_budgets
    with ledger.write() as conn:
        row = _row(ledger, conn, name)
        since, errors = row["errors_since"], row["errors"]
        if since is None or now - since >= window:
            since, errors = now, 0
        errors += 1
        conn.execute(t.update().where(t.c.name == name).values(errors_since=since, errors=errors))
    return errors
