"""A job's output-length distribution learned from finished lines AND the lines still running. Pure.

Why: short lines finish first. While a job's lines are in flight, the mean of its finished lines is biased low
(survivorship): with a lognormal chat job (sigma 0.8) the estimate the order was laid out with sat at ~0.8 of the
truth. The lines still running carry information: a line admitted no later than a line that already finished
with d tokens, and still running, has produced at least about d tokens (lines decode one token per step side by
side; prefill queueing makes this approximate). "No later" is by admission round (one next_batch call: its lines
start together). No clock is needed: only the order of admissions and finishes.

The estimate is the Kaplan-Meier product-limit distribution over finished lines (events) and running lines with
a lower bound (right-censored at it). Where the largest points are censored the remaining mass sits at their
bound: the estimate stays a lower bound there, never an extrapolation. Running lines with no bound yet (admitted
after every finished line) carry no information and are left out.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import islice

# A refresh sorts its finished and running lines: O(n log n) in Python, about a second at n = 2^19, in one call on
# the dispatcher's loop. Above this many finished lines it reads an evenly strided sample of both instead (every
# k-th finished line in finish order and every k-th running line in admission order): thinning both alike keeps
# the product-limit estimate's proportions, and a bound from the sample is still a lower bound.
REFRESH_SAMPLE = 8192


class JobLengths:
    """Finished output lengths of one job, with the admission order of finished and running lines.

    Contract: admitted(key, round) when a line starts (rounds never decrease), finished(key, d) when it ends
    with d tokens (an unknown key counts as admitted in the latest round), dropped(key) when it ends without a
    length. n, mean and
    second_moment describe the distribution as of the last refresh() (callers refresh when n doubles)."""

    __slots__ = ("n", "mean", "second_moment", "_seq", "_running", "_done_seq", "_done_d")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.second_moment = 0.0
        self._seq = 0
        self._running: dict[object, int] = {}  # key -> admission round
        self._done_seq = array("q")  # finished lines: admission rounds ...
        self._done_d = array("d")  # ... and their output lengths (16 bytes per finished line)

    def admitted(self, key: object, round_: int) -> None:
        self._seq = max(self._seq, round_)
        self._running[key] = round_

    def dropped(self, key: object) -> None:
        self._running.pop(key, None)

    def finished(self, key: object, d: float) -> None:
        seq = self._running.pop(key, None)
        if seq is None:  # never seen admitted (a caller without admission hooks): no censoring information
            seq = self._seq
        self._done_seq.append(seq)
        self._done_d.append(d)
        self.n += 1

    def refresh(self) -> None:
        """Recompute mean and E[d^2] from finished lines and the running lines' lower bounds (a strided sample of
        both once more than REFRESH_SAMPLE lines finished: bounded cost per call)."""
        stride = -(-self.n // REFRESH_SAMPLE)
        seqs, lengths = self._done_seq[::stride], self._done_d[::stride]
        running = islice(self._running.values(), 0, None, stride)
        bounds = running_bounds(list(zip(seqs, lengths, strict=True)), running)
        self.mean, self.second_moment = product_limit_moments(list(lengths), bounds)


def running_bounds(done: list[tuple[int, float]], running_seqs) -> list[float]:
    """Lower bounds of running lines: the longest finished line admitted at or after each one (0: none)."""
    if not done:
        return []
    done = sorted(done)
    suffix_max = [0.0] * (len(done) + 1)
    for i in range(len(done) - 1, -1, -1):
        suffix_max[i] = max(suffix_max[i + 1], done[i][1])
    seqs = [s for s, _ in done]
    bounds = []
    for seq in running_seqs:
        bound = suffix_max[bisect_left(seqs, seq)]
        if bound > 0:
            bounds.append(bound)
    return bounds


def product_limit_moments(events: list[float], censored: list[float]) -> tuple[float, float]:
    """(E[d], E[d^2]) of the Kaplan-Meier distribution of `events` with `censored` lower bounds; the mass left
    after the last event sits at the largest censored bound. (0, 0) with no events."""
    if not events:
        return 0.0, 0.0
    points = sorted([(d, 0) for d in events] + [(d, 1) for d in censored])  # events before censored at ties
    at_risk = len(points)
    survival = 1.0
    mean = second = 0.0
    for d, is_censored in points:
        if not is_censored:
            mass = survival / at_risk
            mean += mass * d
            second += mass * d * d
            survival -= mass
        at_risk -= 1
    tail = points[len(points) - _trailing_censored(points) :]
    for d, _ in tail:  # the longest lines are still running: what mass is left sits at their bounds
        mean += survival / len(tail) * d
        second += survival / len(tail) * d * d
    return mean, second


def _trailing_censored(points: list[tuple[float, int]]) -> int:
    k = 0
    while k < len(points) and points[len(points) - 1 - k][1]:
        k += 1
    return k
