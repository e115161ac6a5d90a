"""Rows of ``ml_in_flight``: the calls each running task has in flight against one API account.

Every task that calls an API holds a number of *slots* for it (one slot = one call in flight at a time) in the
ledger, so that all lanes, DAGs and workers calling one account stay within one budget together (the pipeline's
``api_budget``). :func:`hold` asks for slots and says how many are granted (one short write transaction, no HTTP
inside); :func:`free_slots` is the read-only check a waiting task makes first; :func:`release` gives them back.
A holder renews its row while it works; the row of a holder that died expires ``ttl`` seconds after its last
renewal, and its slots go back to the others then.

Holders of one api are serialised by the api's anchor row (holder ``""``, locked with ``FOR UPDATE`` on
PostgreSQL, waiting at most :data:`LOCK_TIMEOUT`; SQLite's write transaction excludes other writers), so two
tasks never both take the last slots. Leases are dated by one clock: ``now=None`` (what tasks pass) is the
database's clock on PostgreSQL, whose workers may run on machines whose clocks differ, and this machine's on SQLite
(one file, one machine); tests pass their own ``now``.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase

_ANCHOR = ""
#: How long a holder waits for another's hold transaction on PostgreSQL before giving up (and trying again later).
LOCK_TIMEOUT = "10s"


def _now(ledger: LedgerBase, conn, now: float | None) -> float:
    if now is not None:
        return now
    if ledger.dialect == "postgresql":
        return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
    return time.time()


def _others(conn, api: str, holder: str, now: float) -> int:
    t = schema.in_flight
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.slots), 0)).where(
        t.c.api == api, t.c.holder != holder, t.c.holder != _ANCHOR, t.c.expires_at >= now)).scalar_one())


def hold(ledger: LedgerBase, api: str, holder: str, *, want: int, keep: int = 0, budget: int,
         now: float | None = None, ttl: float) -> int:
    """Ask for ``want`` slots of ``api`` for ``holder`` (replacing what it held); returns the slots granted: as
    many of ``want`` as ``budget`` minus the other live holders' slots leaves. That is how many calls the holder may
    start.

    ``keep``: calls the holder already has in flight (``keep <= want``). They cannot be taken back, so the row keeps
    at least that many slots (the others see them as taken) even when fewer are granted: the holder lets its calls
    drain down to the grant before it starts new ones. A row of 0 slots is removed. The row expires ``ttl``
    seconds after ``now`` unless held again.
    """
    t = schema.in_flight
    with ledger.write(durable=False) as conn:  # soft state: lost rows are simply asked for again
        if ledger.dialect == "postgresql":
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        conn.execute(ledger._insert(t).values(api=api, holder=_ANCHOR, slots=0, expires_at=None)
                     .on_conflict_do_nothing(index_elements=["api", "holder"]))
        conn.execute(ledger._lock(sa.select(t.c.api).where(t.c.api == api, t.c.holder == _ANCHOR)))
        now = _now(ledger, conn, now)
        conn.execute(t.delete().where(t.c.api == api, t.c.holder != _ANCHOR, t.c.expires_at < now))
        granted = max(0, min(want, budget - _others(conn, api, holder, now)))
        slots = max(granted, min(keep, want))
        if slots:
            conn.execute(ledger._insert(t).values(api=api, holder=holder, slots=slots, expires_at=now + ttl)
                         .on_conflict_do_update(index_elements=["api", "holder"],
                                                set_={"slots": slots, "expires_at": now + ttl}))
        else:
            conn.execute(t.delete().where(t.c.api == api, t.c.holder == holder))
    return granted


def free_slots(ledger: LedgerBase, api: str, holder: str, *, budget: int, now: float | None = None) -> int:
    """How many slots of ``api`` the live holders other than ``holder`` leave free (read only)."""
    with ledger.read() as conn:
        return max(0, budget - _others(conn, api, holder, _now(ledger, conn, now)))


def release(ledger: LedgerBase, api: str, holder: str) -> None:
    """Give back every slot ``holder`` holds for ``api``."""
    t = schema.in_flight
    with ledger.write(durable=False) as conn:
        conn.execute(t.delete().where(t.c.api == api, t.c.holder == holder))


def holders(ledger: LedgerBase, api: str, *, now: float | None = None) -> dict[str, int]:
    """The live holders of ``api`` and their slots (for tests, the bench and troubleshooting)."""
    t = schema.in_flight
    with ledger.read() as conn:
        rows = conn.execute(sa.select(t.c.holder, t.c.slots).where(
            t.c.api == api, t.c.holder != _ANCHOR, t.c.expires_at >= _now(ledger, conn, now))).all()
    return {holder: slots for holder, slots in rows}
