"""The in-flight budget of an API account, held in the ledger: every lane, DAG and worker calling one account
together never has more than ``api_budget`` calls in flight, a waiting task takes the slots another gives back,
and a dead holder's slots come back after its lease."""

from __future__ import annotations

import threading
import time

import pytest
from tests.conftest import at_once_in_processes

from ml_connector.ledger import Ledger, in_flight
from ml_connector.operators.in_flight import SharedBudget, work_within

API = "ups:ups_default"


# -- the ledger rows --------------------------------------------------------------------------------------------

def test_holders_never_get_more_than_the_budget_together(ledger):
    now = 1000.0
    assert in_flight.hold(ledger, API, "a", want=12, budget=16, now=now, ttl=30) == 12
    assert in_flight.hold(ledger, API, "b", want=16, budget=16, now=now, ttl=30) == 4
    assert in_flight.hold(ledger, API, "c", want=16, budget=16, now=now, ttl=30) == 0
    assert in_flight.free_slots(ledger, API, "c", budget=16, now=now) == 0
    assert in_flight.holders(ledger, API, now=now) == {"a": 12, "b": 4}
    # another account has its own budget
    assert in_flight.hold(ledger, "business_central:bc", "a", want=16, budget=16, now=now, ttl=30) == 16


def test_a_holder_gives_back_and_another_takes_it(ledger):
    now = 1000.0
    in_flight.hold(ledger, API, "a", want=16, budget=16, now=now, ttl=30)
    assert in_flight.hold(ledger, API, "a", want=8, budget=16, now=now, ttl=30) == 8  # its tail
    assert in_flight.free_slots(ledger, API, "b", budget=16, now=now) == 8
    assert in_flight.hold(ledger, API, "b", want=16, budget=16, now=now, ttl=30) == 8
    in_flight.release(ledger, API, "a")
    assert in_flight.hold(ledger, API, "b", want=16, budget=16, now=now, ttl=30) == 16
    assert in_flight.holders(ledger, API, now=now) == {"b": 16}


def test_calls_in_flight_are_kept_even_over_a_smaller_budget(ledger):
    now = 1000.0
    in_flight.hold(ledger, API, "a", want=10, budget=16, now=now, ttl=30)
    # another DAG on the same account with a smaller budget takes nothing while 8 or more are held
    assert in_flight.hold(ledger, API, "b", want=4, budget=8, now=now, ttl=30) == 0
    assert in_flight.hold(ledger, API, "b", want=6, budget=16, now=now, ttl=30) == 6
    # a holder keeps the slots of the calls it has in flight (the others see them as taken), but may start new
    # calls only within what is granted
    assert in_flight.hold(ledger, API, "a", want=10, keep=6, budget=8, now=now, ttl=30) == 2
    assert in_flight.holders(ledger, API, now=now) == {"a": 6, "b": 6}


def test_a_dead_holders_slots_come_back_after_its_lease(ledger):
    in_flight.hold(ledger, API, "dead", want=16, budget=16, now=1000.0, ttl=30)
    assert in_flight.hold(ledger, API, "b", want=16, budget=16, now=1029.0, ttl=30) == 0
    assert in_flight.hold(ledger, API, "b", want=16, budget=16, now=1031.0, ttl=30) == 16
    assert in_flight.holders(ledger, API, now=1031.0) == {"b": 16}


def _hold_at_once(url, barrier, errors):
    ledger = Ledger(url)
    import os

    barrier.wait()
    try:
        granted = in_flight.hold(ledger, API, f"p{os.getpid()}", want=5, budget=16, now=time.time(), ttl=60)
    except Exception as exc:  # pragma: no cover - reported to the parent
        errors.put(repr(exc))
        return
    errors.put(f"granted {granted}")


def test_processes_asking_at_once_share_the_budget(ledger_url):
    Ledger(ledger_url)  # the schema, before the processes race
    said = at_once_in_processes(8, _hold_at_once, ledger_url)
    grants = [int(s.split()[1]) for s in said if s.startswith("granted")]
    assert len(grants) == 8, said
    assert sum(grants) == 16  # 3 get 5, one gets 1, the others nothing: never 8 x 5
    assert sum(in_flight.holders(Ledger(ledger_url), API, now=time.time()).values()) == 16


# -- tasks working within the budget ---------------------------------------------------------------------------

class InFlightCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def call(self, seconds: float = 0.01) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1


def budget(ledger, holder, size=16) -> SharedBudget:
    return SharedBudget(ledger, API, holder, size, poll_seconds=0.02)


def test_lanes_working_at_once_never_exceed_the_budget_together(ledger):
    api = InFlightCounter()
    lanes = {name: budget(ledger, name) for name in ("lane-0", "lane-1", "lane-2")}
    results: dict[str, list[int]] = {}

    def lane(name: str) -> None:
        results[name] = work_within(list(range(120)), lambda i: (api.call(), i)[1], threads=16,
                                    budget=lanes[name], name=name)

    threads = [threading.Thread(target=lane, args=(name,)) for name in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results[name] == list(range(120)) for name in lanes)  # every item, in order
    assert api.most <= 16
    # lanes take what the others leave (turns at full speed), not a third each
    assert max(b.most_held for b in lanes.values()) == 16 and all(b.most_held > 16 // 3 for b in lanes.values())
    assert in_flight.holders(ledger, API, now=time.time()) == {}  # everything given back


def test_a_waiting_lane_starts_when_the_other_gives_back_its_tail(ledger):
    api = InFlightCounter()
    first, second = budget(ledger, "first"), budget(ledger, "second")
    started = threading.Event()
    second_at: list[int] = []

    def slow_first(i: int) -> int:
        started.set()
        api.call(2.0 if i >= 20 else 0.01)  # the first lane's last 8 items are slow: its tail
        return i

    t = threading.Thread(target=work_within, args=(list(range(28)), slow_first),
                         kwargs={"threads": 16, "budget": first})
    t.start()
    started.wait(10)
    work_within(list(range(4)), lambda i: second_at.append(api.now) or api.call(), threads=4, budget=second)
    first_still_working = t.is_alive()
    t.join(30)
    assert api.most <= 16
    assert second.most_held == 4 and len(second_at) == 4
    assert first_still_working  # the second lane used the slots the first gave back, not waiting for its end
    assert in_flight.holders(ledger, API, now=time.time()) == {}


def test_a_dead_holder_only_delays_the_others_by_its_lease(ledger):
    in_flight.hold(ledger, API, "killed-task", want=16, budget=16, now=time.time(), ttl=0.5)
    done = work_within(list(range(5)), lambda i: i, threads=5, budget=budget(ledger, "next"))
    assert done == list(range(5))


def test_a_hold_lost_while_calls_run_is_never_refilled_over_the_budget(ledger):
    """A holder's row vanishes while its 16 calls run (a renewal much too late) and another takes the 16 slots:
    the calls already running cannot be recalled, but once the renewal comes no new call starts over the budget."""
    api, samples = InFlightCounter(), []
    a, b = (SharedBudget(ledger, API, name, 16, lease_seconds=0.6, poll_seconds=0.02) for name in ("a", "b"))
    b_started, stop = threading.Event(), threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), api.now))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    lane_a = threading.Thread(target=work_within, args=(list(range(1200)), lambda i: api.call(0.05)),
                              kwargs={"threads": 16, "budget": a})
    lane_a.start()
    time.sleep(0.3)
    in_flight.release(ledger, API, "a")  # A's row is gone while its calls run
    lost_at = time.monotonic()
    lane_b = threading.Thread(target=lambda: (b_started.set(), work_within(
        list(range(1200)), lambda i: api.call(0.05), threads=16, budget=b)))
    lane_b.start()
    lane_a.join(60)
    lane_b.join(60)
    stop.set()
    sampler.join()
    settled = [n for t, n in samples if t > lost_at + 1.0]  # A renewed (every 0.2 s) and its old calls ended
    assert settled and max(settled) <= 16


def test_a_failed_renewal_keeps_the_slots_of_calls_in_flight_until_they_end(ledger):
    class FailsAfterFirstHold(SharedBudget):
        holds = 0

        def hold(self, want, keep):
            self.holds += 1
            if self.holds > 1:
                raise ConnectionError("ledger unreachable")
            return super().hold(want, keep)

    # A holds 16 slots and starts 16 calls of 1.2 s; its renewals fail from 0.5 s on, and at 1.0 s (two thirds of
    # its 1.5 s lease) its work fails. Its calls still run until 1.2 s: their slots must stay taken until then (the
    # row's lease would run out at 1.5 s); B has been waiting since 0.3 s.
    api = InFlightCounter()
    a = FailsAfterFirstHold(ledger, API, "a", 16, lease_seconds=1.5, poll_seconds=0.02)
    outcome = {}

    def lane_a():
        try:
            work_within(list(range(40)), lambda i: api.call(1.2), threads=16, budget=a)
        except RuntimeError as exc:
            outcome["a"] = str(exc)

    t = threading.Thread(target=lane_a)
    t.start()
    time.sleep(0.3)
    work_within(list(range(16)), lambda i: api.call(0.05), threads=16, budget=budget(ledger, "b"))
    t.join(30)
    assert api.most <= 16  # B got A's slots only once A's 16 calls in flight had ended
    assert "in-flight budget could not be held: ledger unreachable" in outcome["a"]


def test_an_unreachable_ledger_fails_the_work_instead_of_hanging():
    class Broken(SharedBudget):
        def hold(self, want, keep):
            raise ConnectionError("ledger unreachable")

        def free(self):
            raise ConnectionError("ledger unreachable")

        def release(self):
            raise ConnectionError("ledger unreachable")

    with pytest.raises(RuntimeError, match="in-flight budget could not be held: ledger unreachable"):
        work_within(list(range(3)), lambda i: i, threads=3, budget=Broken(None, API, "x", 16, lease_seconds=0.3))


def test_without_a_budget_it_is_a_thread_pool():
    assert work_within([3, 1, 2], lambda i: i * 2, threads=8, budget=None) == [6, 2, 4]
    assert work_within([], lambda i: i, threads=8, budget=None) == []


def test_a_single_call_waits_for_a_slot_and_gives_it_back(ledger):
    in_flight.hold(ledger, API, "busy-lane", want=16, budget=16, now=time.time(), ttl=0.6)
    single = budget(ledger, "ship-from")
    assert single.call(lambda: "warehouse") == "warehouse"  # once the busy lane's hold lapsed
    assert single.most_held == 1
    assert in_flight.holders(ledger, API, now=time.time()) == {}
