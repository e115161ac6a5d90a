"""Working a task's items within the in-flight budget of one API account, shared through the ledger.

Each API account (a carrier or ERP connection) has an in-flight budget: at most ``api_budget`` calls at once,
across every lane, DAG and worker calling it. A task holds *slots* of it in the ledger
(:mod:`ml_connector.ledger.in_flight`), one per call it may have in flight, and works its items on as many
threads as it holds slots:

- it asks for as many slots as it has threads (never more than it has items left);
- it gets what the other holders leave; while it has fewer than it wants it looks again every
  :data:`POLL_SECONDS` (a read; a write only when more is free than it holds);
- as its last items finish it gives slots back in halves, and all of them when it ends, so a waiting task
  starts while this one finishes its tail;
- it renews its hold every third of :data:`LEASE_SECONDS`; a task that died frees its slots after that. A
  failed renewal is tried again while the lease lasts; a ledger that stays unreachable fails the work (calls in
  flight end first, and keep their slots until then).

So the lanes of a big run take turns at full speed instead of splitting the budget: while one lane buys labels
with all of UPS's slots, another writes tracking numbers to the ERP with the ERP's, and a lane's next step
starts (process start, DAG parse) while another lane still uses the API. The ledger holds the budget, so two
DAGs sharing one UPS account share its budget too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ml_connector.ledger import in_flight

T = TypeVar("T")
R = TypeVar("R")

#: Seconds after its last renewal that a holder's slots go back to the others (a task killed without
#: releasing them); holders renew every third of it.
LEASE_SECONDS = 30.0
#: Seconds between looks at the budget while a task holds fewer slots than it wants.
POLL_SECONDS = 0.2


class SharedBudget:
    """One task's hold on one API account's in-flight budget.

    :param ledger: the ledger holding the budget.
    :param api: the account, e.g. ``"ups:ups_default"`` (vendor and connection id; no secret).
    :param holder: this task (unique per task try).
    :param budget: the account's in-flight budget (``api_budget``); a holder never takes slots beyond it, whatever
        the others hold.

    Leases are dated by the database's clock (:mod:`ml_connector.ledger.in_flight`), so workers whose clocks differ
    agree on them; renewals are timed with this process's monotonic clock.
    """

    def __init__(self, ledger: Any, api: str, holder: str, budget: int, *, lease_seconds: float = LEASE_SECONDS,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.ledger, self.api, self.holder, self.budget = ledger, api, holder, budget
        self.lease_seconds, self.poll_seconds = lease_seconds, poll_seconds
        self.most_held = 0  # the most slots this task was granted at once (for logs and tests)

    def hold(self, want: int, keep: int) -> int:
        """Ask for ``want`` slots, keeping ``keep`` calls in flight; returns how many calls may run now."""
        granted = in_flight.hold(self.ledger, self.api, self.holder, want=want, keep=keep, budget=self.budget,
                                 ttl=self.lease_seconds)
        self.most_held = max(self.most_held, granted)
        return granted

    def free(self) -> int:
        return in_flight.free_slots(self.ledger, self.api, self.holder, budget=self.budget)

    def release(self) -> None:
        in_flight.release(self.ledger, self.api, self.holder)

    def call(self, fn: Callable[[], R]) -> R:
        """``fn()`` while holding one slot (waited for like any item of :func:`work_within`): a task's calls outside
        its items, e.g. the ship-from read, an extract's pages (one at a time)."""
        return work_within([fn], lambda f: f(), threads=1, budget=self, name="call")[0]


class _Gate:
    """At most ``limit`` callers inside at once; the limit moves while callers wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.limit = 0
        self.active = 0
        self.error: BaseException | None = None

    def enter(self) -> None:
        with self._cond:
            while self.active >= self.limit and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise RuntimeError(f"the in-flight budget could not be held: {self.error}") from self.error
            self.active += 1

    def leave(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self._cond.notify_all()

    def wait_idle(self) -> None:
        """Wait until no caller is inside (the calls in flight have ended)."""
        with self._cond:
            while self.active:
                self._cond.wait()


def work_within(items: Sequence[T], work: Callable[[T], R], *, threads: int, budget: SharedBudget | None,
                name: str = "work") -> list[R]:
    """``[work(item) for item in items]`` on up to ``threads`` threads, never more calls at once than ``budget``
    grants (``None``: ``threads`` at once, no shared budget). Results come in the order of ``items``; an
    exception from ``work`` is raised here, as :meth:`ThreadPoolExecutor.map` raises it."""
    if not items:
        return []
    threads = max(1, min(threads, len(items)))
    if budget is None:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) as pool:
            return list(pool.map(work, items))
    gate, lock, changed, stop = _Gate(), threading.Lock(), threading.Event(), threading.Event()
    left = [len(items)]

    def run(item: T) -> R:
        gate.enter()
        try:
            return work(item)
        finally:
            gate.leave()
            with lock:
                left[0] -= 1
                tail = left[0] * 2 <= gate.limit
            if tail:  # half of the slots or more are no longer needed: give them back now
                changed.set()

    def keep_hold() -> None:
        granted = stored = 0  # calls that may start / slots the ledger row keeps (granted + calls kept in flight)
        renewed = time.monotonic()  # the last hold that reached the ledger (or the start)
        try:
            while not stop.is_set():
                with lock:
                    want = min(threads, left[0])
                if want == 0:
                    return
                now, active = time.monotonic(), gate.active
                shrink = want * 2 <= granted
                drained = stored > max(granted, active)  # calls kept over the grant have ended: give them back
                try:
                    if (granted < want and budget.free() > granted) or shrink or drained \
                            or now - renewed >= budget.lease_seconds / 3:
                        keep = min(active, want)
                        granted = budget.hold(want if granted < want or shrink else granted, keep=keep)
                        stored, renewed = max(granted, keep), now
                        gate.set_limit(granted)
                except Exception:
                    # a transient ledger error: the hold stands until its lease runs out; try again shortly
                    if time.monotonic() - renewed >= budget.lease_seconds * 2 / 3:
                        raise
                    time.sleep(budget.poll_seconds)  # not changed.wait: a set event would not wait at all
                    continue
                wait = (budget.poll_seconds if granted < want or stored > granted
                        else max(0.0, budget.lease_seconds / 3 - (now - renewed)))
                changed.wait(wait)
                changed.clear()
        except BaseException as exc:  # the ledger stays unreachable: the workers fail with it, nothing hangs
            gate.fail(exc)
        finally:
            gate.wait_idle()  # the slots of calls still in flight are given back only once they ended
            with contextlib.suppress(Exception):
                budget.release()

    keeper = threading.Thread(target=keep_hold, name=f"{name}-budget", daemon=True)
    keeper.start()
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) as pool:
            return list(pool.map(run, items))
    finally:
        stop.set()
        changed.set()
        keeper.join()
