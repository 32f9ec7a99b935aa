"""Synthetic batch traces after the BlendServe paper's Table 2 recipe (pure, seeded).

Three request classes:
  chat  (ShareGPT/API-like): one of 8 system prompts + a unique user turn; ~250 output tokens
  mmlu  (few-shot QA):       one of 57 subject few-shot prefixes + a unique question; 1-8 output tokens
  long  (long generation):   one of 4 instruction templates + a short unique topic; ~1500 output tokens
Trace#1..#4 = target density rho {1.4, 1.4, 0.9, 0.9} x prefix sharing {35%, 5%, 35%, 5%}. The class mix and
the shared-prefix lengths are calibrated on a 4k-request sample to hit the targets under the given perf model.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim.engine import SimRequest

TRACES = {1: (1.4, 0.35), 2: (1.4, 0.05), 3: (0.9, 0.35), 4: (0.9, 0.05)}
_SHARED_BASE = 1 << 40  # ids of shared segments live above any unique id


@dataclass(frozen=True)
class Mix:
    f_mmlu: float
    f_long: float
    share: float  # scales shared-prefix lengths

    def generate(self, n: int, seed: int) -> list[SimRequest]:
        rng = random.Random(seed)
        out = []
        for rid in range(n):
            u = rng.random()
            cls = "mmlu" if u < self.f_mmlu else "long" if u < self.f_mmlu + self.f_long else "chat"
            out.append(_make(rid, cls, self.share, rng))
        return out


def _lognormal(rng: random.Random, mean: float, sigma: float = 0.6) -> float:
    import math

    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)


def _make(rid: int, cls: str, share: float, rng: random.Random) -> SimRequest:
    if cls == "chat":
        k = rng.randrange(8)
        shared = max(8, int(share * (150 + 50 * k)))
        unique = max(4, int(_lognormal(rng, 300)))
        out = max(1, min(1024, int(_lognormal(rng, 250, 0.7))))
        segs, max_tokens = ((_SHARED_BASE + k, shared), (rid, unique)), 1024
    elif cls == "mmlu":
        k = rng.randrange(57)
        shared = max(8, int(share * (700 + 10 * k)))
        unique = max(4, int(_lognormal(rng, 80, 0.3)))
        out = rng.randint(1, 8)
        segs, max_tokens = ((_SHARED_BASE + 100 + k, shared), (rid, unique)), 16
    else:
        k = rng.randrange(4)
        shared = max(8, int(share * 120))
        unique = max(4, int(_lognormal(rng, 150, 0.4)))
        out = max(64, min(4096, int(_lognormal(rng, 1500, 0.4))))
        segs, max_tokens = ((_SHARED_BASE + 200 + k, shared), (rid, unique)), 4096
    return SimRequest(rid, segs, out, max_tokens, cls)


def measure(requests: list[SimRequest], perf: PerfModel) -> tuple[float, float]:
    """(rho with shared prefixes computed once, prefix-sharing ratio of prompt tokens)."""
    prompt = sum(r.prompt_len for r in requests)
    unique = _unique_prompt_tokens(requests)
    comp = (unique + sum(r.output_len for r in requests)) * perf.comp_per_token
    mem = sum(perf.mem(r.prompt_len, r.output_len) for r in requests)
    return comp / mem, (prompt - unique) / prompt


def _unique_prompt_tokens(requests: list[SimRequest]) -> int:
    seen: set[tuple] = set()
    total = 0
    for r in requests:
        key: tuple = ()
        for seg_id, length in r.segments:
            key = key + (seg_id,)
            if key not in seen:
                seen.add(key)
                total += length
    return total


def calibrate(rho: float, sharing: float, perf: PerfModel, seed: int = 0) -> Mix:
    """Grid search over the class mix and shared lengths for the closest (rho, sharing) at large n, from
    per-class samples (shared prefixes are few, so at scale they count once and cost nothing)."""
    rng = random.Random(seed)
    base = {cls: [_make(i, cls, 1.0, rng) for i in range(800)] for cls in ("chat", "mmlu", "long")}
    best, best_err = Mix(0.1, 0.2, 1.0), float("inf")
    for share in [x / 100 for x in range(2, 201, 2)]:
        stats = {cls: _class_stats(reqs, share, perf) for cls, reqs in base.items()}
        for f_mmlu in [x / 40 for x in range(0, 17)]:
            for f_long in [x / 80 for x in range(0, 41)]:
                if f_mmlu + f_long > 0.9:
                    continue
                w = {"chat": 1 - f_mmlu - f_long, "mmlu": f_mmlu, "long": f_long}
                tot = [sum(w[c] * stats[c][i] for c in w) for i in range(4)]  # prompt, shared, comp, mem
                got_rho, got_share = tot[2] / tot[3], tot[1] / tot[0]
                err = abs(got_rho / rho - 1) + abs(got_share - sharing) / max(sharing, 0.05)
                if err < best_err:
                    best, best_err = Mix(f_mmlu, f_long, share), err
    return best


def _class_stats(reqs: list[SimRequest], share: float, perf: PerfModel) -> tuple[float, float, float, float]:
    prompt = shared = comp = mem = 0.0
    for r in reqs:
        s_len = max(8, int(share * r.segments[0][1]))
        p = s_len + r.segments[1][1]
        prompt += p
        shared += s_len
        comp += (r.segments[1][1] + r.output_len) * perf.comp_per_token
        mem += perf.mem(p, r.output_len)
    n = len(reqs)
    return prompt / n, shared / n, comp / n, mem / n


def trace(number: int, n: int, perf: PerfModel, seed: int = 0) -> list[SimRequest]:
    rho, sharing = TRACES[number]
    return calibrate(rho, sharing, perf, seed).generate(n, seed + number)


class TokenPool:
    """Materialises a request's prompt as token ids: each segment id maps to a fixed window of a random pool,
    so equal segments give equal tokens and different segments differ from their first token on (almost
    surely, as with real text)."""

    def __init__(self, size: int = 1 << 21, vocab: int = 50_000, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.pool = array("i", (rng.randrange(vocab) for _ in range(size)))
        self.size = size

    def tokens(self, req: SimRequest) -> array:
        out = array("i")
        for seg_id, length in req.segments:
            off = (seg_id * 2654435761) % (self.size - length)
            out += self.pool[off : off + length]
        return out
