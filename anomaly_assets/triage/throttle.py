"""A sliding-window counter per key (a client address, a user name): how the triage page
slows password guessing and keeps refused requests from flooding its audit table."""

import threading
import time
from collections import defaultdict, deque


class Throttle:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count one event for ``key``; False once it is over the limit in the window."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            hits.append(now)
            return len(hits) <= self.limit

    def over(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key, ())
            return sum(1 for t in hits if t > now - self.window_s) >= self.limit
