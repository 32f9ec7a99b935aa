"""Pending lines by estimated output length, longest first: the admission policy's critical-path queue. Pure.

What a heap of (-d_est, filing number, line) gives, ties in filing order, but cheaper: a heap of a million lines
costs a pop O(log n) tuple compares, most of them cache misses, once per admitted line. Estimates take few
distinct values (a job's lines share its estimate), so each distinct estimate keeps a FIFO of its lines in filing
order and only the distinct estimates are in a heap: the same pops, O(1) but for an estimate filed anew or emptied.
Lines that went stale (admitted, removed or re-estimated since) stay where they were filed: the caller skips or
refiles them when they come up, as with the heap.
"""

from __future__ import annotations

import heapq
from collections import deque

from blendserve.core.sched.prefix_tree import TreeRequest


class LongestFirst:
    """Lines filed under an estimate; peek() and pop() give the longest estimate first, then the earliest filed."""

    def __init__(self) -> None:
        self._fifos: dict[float, deque[TreeRequest]] = {}  # estimate -> its lines, in filing order (never empty)
        self._keys: list[float] = []  # -estimate of every FIFO, a heap
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def push(self, d_est: float, req: TreeRequest) -> None:
        fifo = self._fifos.get(d_est)
        if fifo is None:
            fifo = self._fifos[d_est] = deque()
            heapq.heappush(self._keys, -d_est)
        fifo.append(req)
        self._len += 1

    def top(self) -> float:
        """The longest filed estimate, 0.0 when empty. Its line may be stale (taken or re-estimated since)."""
        return -self._keys[0] if self._keys else 0.0

    def peek(self) -> tuple[float, TreeRequest]:
        """The longest estimate and its earliest line (IndexError when empty)."""
        d_est = -self._keys[0]
        return d_est, self._fifos[d_est][0]

    def pop(self) -> TreeRequest:
        d_est = -self._keys[0]
        fifo = self._fifos[d_est]
        req = fifo.popleft()
        self._len -= 1
        if not fifo:
            del self._fifos[d_est]
            heapq.heappop(self._keys)
        return req
