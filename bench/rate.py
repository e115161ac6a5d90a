"""What the API rate benchmarks share: ``calls`` calls spread over ``workers`` threads, timed, with the busiest
limit window counted from the moments the calls returned."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable


def spread_calls(make_call: Callable[[], Callable[[], object]], calls: int, workers: int,
                 window_seconds: float) -> dict[str, float]:
    """Run ``calls`` calls over ``workers`` threads (each thread makes its own caller with ``make_call``: one
    hook per worker, as tasks have); returns ``calls``, ``elapsed`` seconds and ``busiest`` (the most calls
    that returned within one limit window of ``window_seconds``)."""
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        call = make_call()
        for _ in range(n):
            call()
            with lock:
                stamps.append(time.time())

    share = [calls // workers + (1 if i < calls % workers else 0) for i in range(workers)]
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    windows = Counter(int(stamp // window_seconds) for stamp in stamps)
    return {"calls": len(stamps), "elapsed": time.perf_counter() - started, "busiest": max(windows.values())}
