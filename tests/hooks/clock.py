"""A clock the tests move forward instead of sleeping: real time plus an offset."""

from __future__ import annotations

import threading
import time


class MovableClock:
    """``clock()`` is ``time.time()`` plus everything :meth:`advance` added (shared by threads)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds
