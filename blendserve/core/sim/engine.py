"""Discrete-event model of a continuous-batching engine (pure). See ARCHITECTURE.md "Simulator step time".

Engine: KV pool of `kv_capacity` tokens; a radix prefix cache (LRU over unreferenced leaves) that shares the
pool with running requests; chunked prefill of `chunk` tokens per step mixed with all decodes; admission in
policy order, head-of-line, reserving reserve_ratio * max_tokens output slots per request; a request whose
decode would overflow the pool retracts the newest running request (back to the head of the queue; its prompt
stays cached). Per step with T_p prefill tokens, n decodes holding K tokens of KV:
  dense   = max(2 P (T_p + n) / FLOPS, weight_bytes / BW)     attention-prefill = a_p   kv-read = K kvb / BW
  sequential (stock SGLang/vLLM, operators one after another) = dense + a_p + kv-read
  overlapped (NanoFlow-style)                                  = max(2P(T_p+n)/FLOPS + a_p, W/BW + kv-read)
  step = (1 - overlap) * sequential + overlap * overlapped
Time advances segment by segment (between admissions, prefill completions, finishes, overflows) with the sums
over a segment's steps in closed form, so 100k requests simulate in seconds.
Prefix sharing is modelled at segment granularity: a prompt is a sequence of (segment id, length) parts and
prompts share exactly the parts they have in common from the start (workloads.py builds them that way).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from blendserve.core.sched.perf_model import PerfModel


@dataclass(frozen=True, slots=True)
class SimRequest:
    rid: int
    segments: tuple[tuple[int, int], ...]  # (segment id, token length); shared segments have shared ids
    output_len: int  # the true output length (the engine learns it only when the request finishes)
    max_tokens: int
    cls: str = ""

    @property
    def prompt_len(self) -> int:
        return sum(length for _, length in self.segments)


class Policy(Protocol):
    """Decides admission order. peek/pop give the next request; on_finish reports true output lengths."""

    def peek(self, engine: Engine) -> SimRequest | None: ...
    def pop(self) -> SimRequest: ...
    def requeue(self, req: SimRequest) -> None: ...
    def on_finish(self, req: SimRequest, engine: Engine) -> None: ...


class ListPolicy:
    """A fixed order (FCFS, DFS, random)."""

    def __init__(self, order: list[SimRequest]) -> None:
        self.queue = deque(order)

    def peek(self, engine: Engine) -> SimRequest | None:
        return self.queue[0] if self.queue else None

    def pop(self) -> SimRequest:
        return self.queue.popleft()

    def requeue(self, req: SimRequest) -> None:
        self.queue.appendleft(req)

    def on_finish(self, req: SimRequest, engine: Engine) -> None:
        pass


@dataclass
class EngineConfig:
    kv_capacity: int
    chunk: int = 8192
    max_running: int = 1024
    reserve_ratio: float = 0.15  # SGLang's new_token_ratio decays toward ~0.1; retraction covers misses
    overlap: float = 0.0  # 0 = sequential operators (SGLang), 1 = overlapped (NanoFlow-style)
    # Overlapped engines size each step's prefill so its compute covers the step's memory time (NanoFlow's
    # batch shaping); stock SGLang takes a fixed chunk. None = decide by overlap (> 0.5 -> balanced).
    balanced_chunk: bool | None = None
    min_chunk: int = 512


@dataclass
class SimResult:
    time_s: float
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    recomputed_tokens: int
    retractions: int
    steps: int

    @property
    def throughput(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.time_s if self.time_s > 0 else 0.0

    @property
    def cache_hit_ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(slots=True)
class _CacheNode:
    tokens: int
    parent: tuple | None
    ref: int = 0
    children: int = 0
    last: float = 0.0


@dataclass(slots=True)
class _Running:
    req: SimRequest
    seq: int
    nodes: list = field(default_factory=list)
    reserve: int = 0
    start: int = 0  # global decode step at which decoding began
    attn_per_token: float = 0.0
    cached: int = 0


def sum_of_max(c: float, b: float, m: float, s: int) -> float:
    """sum_{t=0}^{s-1} max(c, b + m t) for m >= 0."""
    if s <= 0:
        return 0.0
    if m <= 0 or b >= c:
        return s * max(c, b) if m <= 0 else s * b + m * s * (s - 1) / 2
    t_star = min(s, math.ceil((c - b) / m))
    return t_star * c + (s - t_star) * b + m * ((s - 1) * s / 2 - (t_star - 1) * t_star / 2)


class Engine:
    def __init__(self, perf: PerfModel, cfg: EngineConfig) -> None:
        self.perf, self.cfg = perf, cfg
        self.time = 0.0
        self.step = 0
        self.cache: dict[tuple, _CacheNode] = {}
        self.resident = 0  # tokens of all cached prompt KV
        self.referenced = 0  # tokens of cached KV held by admitted requests
        self.evictable: list[tuple[float, tuple]] = []
        self.running: dict[int, _Running] = {}  # decoding, by seq
        self.finish_heap: list[tuple[int, int]] = []
        self.prefill: deque[list] = deque()  # [_Running, remaining tokens]
        self.prefill_total = 0
        self.reserved = 0
        self.sum_start = 0  # sum of start steps of decoding requests
        self.sum_prompt = 0  # sum of prompt lengths of decoding requests
        self._seq = 0
        self.stats = dict(prompt=0, output=0, cached=0, recomputed=0, retractions=0)

    # ---- occupancy ----------------------------------------------------------------------------------
    @property
    def n_decode(self) -> int:
        return len(self.running)

    def generated(self) -> int:
        return self.n_decode * self.step - self.sum_start

    def inflight(self) -> int:
        return len(self.running) + len(self.prefill)

    # ---- radix cache --------------------------------------------------------------------------------
    def _match(self, req: SimRequest) -> tuple[list[tuple], int]:
        keys, key, cached = [], (), 0
        for seg_id, length in req.segments:
            key = key + (seg_id,)
            if key not in self.cache:
                break
            keys.append(key)
            cached += length
        return keys, cached

    def _evict_until(self, free_needed: int) -> bool:
        while self.resident + self.generated() + free_needed > self.cfg.kv_capacity and self.evictable:
            last, key = heapq.heappop(self.evictable)
            node = self.cache.get(key)
            if node is None or node.ref or node.children or node.last != last:
                continue
            del self.cache[key]
            self.resident -= node.tokens
            if node.parent is not None:
                parent = self.cache[node.parent]
                parent.children -= 1
                if parent.children == 0 and parent.ref == 0:
                    heapq.heappush(self.evictable, (parent.last, node.parent))
        return self.resident + self.generated() + free_needed <= self.cfg.kv_capacity

    def _release(self, nodes: list[tuple]) -> None:
        for key in nodes:
            node = self.cache[key]
            node.ref -= 1
            node.last = self.time
            if node.ref == 0:
                self.referenced -= node.tokens
                if node.children == 0:
                    heapq.heappush(self.evictable, (node.last, key))

    # ---- admission ------------------------------------------------------------------------------------
    def try_admit(self, req: SimRequest) -> bool:
        if self.inflight() >= self.cfg.max_running:
            return False
        keys, cached = self._match(req)
        new_tokens = req.prompt_len - cached
        reserve = max(1, int(min(req.max_tokens, 4096) * self.cfg.reserve_ratio))
        hit_unref = sum(self.cache[k].tokens for k in keys if self.cache[k].ref == 0)
        committed = self.referenced + hit_unref + self.reserved + self.generated()
        if committed + new_tokens + reserve > self.cfg.kv_capacity and self.inflight() > 0:
            return False
        for key in keys:  # take references first so eviction cannot take the hit
            node = self.cache[key]
            if node.ref == 0:
                self.referenced += node.tokens
            node.ref += 1
            node.last = self.time
        if not self._evict_until(new_tokens) and self.inflight() > 0:
            self._release(keys)
            return False
        run = _Running(req, self._seq, list(keys), reserve, cached=cached)
        self._seq += 1
        key = keys[-1] if keys else ()
        for seg_id, length in req.segments[len(keys) :]:
            parent, key = (key or None), key + (seg_id,)
            self.cache[key] = _CacheNode(length, parent, ref=1, last=self.time)
            if parent is not None:
                self.cache[parent].children += 1
            self.resident += length
            self.referenced += length
            run.nodes.append(key)
        layers, hidden = self.perf.model.layers, self.perf.model.hidden
        run.attn_per_token = 4.0 * layers * hidden * (cached + new_tokens / 2) / self.perf.gpu.flops
        self.reserved += reserve
        self.stats["prompt"] += req.prompt_len
        self.stats["cached"] += cached
        self.prefill.append([run, max(1, new_tokens)])
        self.prefill_total += max(1, new_tokens)
        return True

    # ---- one segment of steps -----------------------------------------------------------------------
    def _segment_steps(self) -> int:
        s = 1 << 40
        if self.finish_heap:
            s = min(s, self.finish_heap[0][0] - self.step)
        if self.prefill:
            s = min(s, math.ceil(self.prefill[0][1] / self._prefill_tokens()))
        if self.running:
            room = self.cfg.kv_capacity - self.referenced - self.generated()
            s = min(s, max(0, room // self.n_decode))
        return s

    def _prefill_tokens(self) -> int:
        if not self.prefill:
            return 0
        balanced = self.cfg.balanced_chunk if self.cfg.balanced_chunk is not None else self.cfg.overlap > 0.5
        chunk = self.cfg.chunk
        if balanced:
            perf = self.perf
            memory = perf.weight_read_time + perf.mem_per_token_read * (self.sum_prompt + self.generated())
            fill = int(memory / perf.comp_per_token) - self.n_decode
            chunk = min(chunk, max(self.cfg.min_chunk, fill))
        return min(chunk, self.prefill_total)

    def advance(self) -> None:
        s = self._segment_steps()
        if s <= 0:
            self._retract_newest()
            return
        n = self.n_decode
        t_p = self._prefill_tokens()
        attn = self.prefill[0][0].attn_per_token * t_p if self.prefill else 0.0
        perf, a = self.perf, self.cfg.overlap
        dense_c = perf.comp_per_token * (t_p + n)
        w, k = perf.weight_read_time, perf.mem_per_token_read
        kv0 = self.sum_prompt + self.generated()
        seq_time = s * (max(dense_c, w) + attn) + k * (s * kv0 + n * s * (s - 1) / 2)
        ovl_time = sum_of_max(dense_c + attn, w + k * kv0, k * n, s) if a else 0.0
        self.time += (1 - a) * seq_time + a * ovl_time
        self.step += s
        self._consume_prefill(s * t_p)
        self._finish_due()

    def _consume_prefill(self, tokens: int) -> None:
        while self.prefill and tokens > 0:
            head = self.prefill[0]
            used = min(tokens, head[1])
            head[1] -= used
            tokens -= used
            self.prefill_total -= used
            if head[1] == 0:
                self.prefill.popleft()
                self._start_decode(head[0])

    def _start_decode(self, run: _Running) -> None:
        run.start = self.step
        self.running[run.seq] = run
        self.sum_start += run.start
        self.sum_prompt += run.req.prompt_len
        heapq.heappush(self.finish_heap, (self.step + max(1, run.req.output_len), run.seq))

    def _drop(self, run: _Running) -> None:
        del self.running[run.seq]
        self.sum_start -= run.start
        self.sum_prompt -= run.req.prompt_len
        self.reserved -= run.reserve
        self._release(run.nodes)

    def _finish_due(self) -> list[SimRequest]:
        done = []
        while self.finish_heap and self.finish_heap[0][0] <= self.step:
            _, seq = heapq.heappop(self.finish_heap)
            run = self.running.get(seq)
            if run is None:
                continue  # retracted earlier
            self._drop(run)
            self.stats["output"] += run.req.output_len
            done.append(run.req)
        self.just_finished = done
        return done

    def _retract_newest(self) -> None:
        run = self.running[max(self.running)]
        self.stats["recomputed"] += self.step - run.start
        self.stats["retractions"] += 1
        self.stats["prompt"] -= run.req.prompt_len  # counted again when it is admitted again
        self.stats["cached"] -= run.cached
        self._drop(run)
        self.retracted.append(run.req)


def simulate(requests_policy: Policy, perf: PerfModel, cfg: EngineConfig, total: int) -> SimResult:
    """Run until `total` requests have finished; the policy is asked for work at every segment boundary."""
    eng = Engine(perf, cfg)
    eng.just_finished, eng.retracted = [], []
    finished = 0
    while finished < total:
        while (req := requests_policy.peek(eng)) is not None and eng.try_admit(req):
            requests_policy.pop()
        if not eng.running and not eng.prefill:
            raise RuntimeError("simulator stalled: nothing running and nothing admissible")
        eng.advance()
        for req in eng.just_finished:
            requests_policy.on_finish(req, eng)
        finished += len(eng.just_finished)
        eng.just_finished = []
        for req in eng.retracted:
            requests_policy.requeue(req)
        eng.retracted = []
    st = eng.stats
    return SimResult(eng.time, st["prompt"], st["output"], st["cached"], st["recomputed"], st["retractions"], eng.step)
