"""Discrete-event model of a continuous-batching engine (pure). Step costs: step_cost.py.

Engine: KV pool of `kv_capacity` tokens; a radix prefix cache (LRU over unreferenced leaves) that shares the
pool with running requests; chunked prefill; admission in policy order, head-of-line, reserving
reserve_ratio * max_tokens output slots per request; a request whose decode would overflow the pool retracts the
newest running request (back to the head of the queue; its prompt stays cached). How prefill and decode share
steps is the mode (step_cost.MODES). Time advances segment by segment (between admissions, prefill completions,
finishes, overflows) with the sums over a segment's steps in closed form, so 100k requests simulate in seconds.
Prefix sharing is modelled at segment granularity: a prompt is a sequence of (segment id, length) parts and
prompts share exactly the parts they have in common from the start.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from blendserve.core.sim.request import Policy, SimRequest, SimResult
from blendserve.core.sim.step_cost import MODES, Hardware, sum_of_max


@dataclass
class EngineConfig:
    kv_capacity: int
    mode: str = "sglang"
    chunk: int = 8192  # SGLang's chunked_prefill_size picks 2048-16384 by GPU memory; 8192 for an 80 GB card
    max_running: int = 1024
    reserve_ratio: float = 0.15  # SGLang's new_token_ratio decays toward ~0.1; retraction covers misses
    min_chunk: int = 512  # overlapped mode sizes each step's prefill so its compute covers the memory time

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")


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


class Engine:
    def __init__(self, hw: Hardware, cfg: EngineConfig) -> None:
        self.hw, self.cfg = hw, cfg
        self.time = 0.0
        self.step = 0  # decode steps: a running request finishes output_len of them after it starts
        self.steps = 0  # all steps, prefill-only ones included
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
        self.just_finished: list[SimRequest] = []  # since the last advance(): simulate() hands them on
        self.retracted: list[SimRequest] = []

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
        keys: list[tuple] = []
        key: tuple = ()
        cached = 0
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
        run.attn_per_token = self.hw.attn_prefill_s(max(1, new_tokens), cached) / max(1, new_tokens)
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
        chunk = self.cfg.chunk
        if self.cfg.mode == "overlapped":  # NanoFlow-like batch shaping: prefill fills the memory-bound step
            hw = self.hw
            memory = hw.weight_read_s + hw.kv_read_per_token_s * (self.sum_prompt + self.generated())
            fill = int(memory / hw.best_comp_per_token_s) - self.n_decode
            chunk = min(chunk, max(self.cfg.min_chunk, fill))
        return min(chunk, self.prefill_total)

    def advance(self) -> None:
        if self.cfg.mode == "sglang" and self.prefill:
            self._prefill_only_segment()
            return
        s = self._segment_steps()
        if s <= 0:
            self._retract_newest()
            return
        n, hw = self.n_decode, self.hw
        t_p = self._prefill_tokens()
        attn = self.prefill[0][0].attn_per_token * t_p if self.prefill else 0.0
        k = hw.kv_read_per_token_s
        kv0 = self.sum_prompt + self.generated()
        if self.cfg.mode == "overlapped":
            elapsed = sum_of_max(hw.gemm_compute_s(t_p + n) + attn, hw.weight_read_s + k * kv0, k * n, s)
        else:
            elapsed = s * (hw.gemm_s(t_p + n) + attn) + k * (s * kv0 + n * s * (s - 1) / 2)
        self.time += elapsed + s * hw.fixed_s
        self.step += s
        self.steps += s
        self._consume_prefill(s * t_p)
        self._finish_due()

    def _prefill_only_segment(self) -> None:
        """SGLang's default: while prefill work is queued, steps are prefill batches and decodes wait."""
        t_p = self._prefill_tokens()
        s = max(1, math.ceil(self.prefill[0][1] / t_p))
        hw = self.hw
        self.time += s * (hw.gemm_s(t_p) + self.prefill[0][0].attn_per_token * t_p + hw.fixed_s)
        self.steps += s
        self._consume_prefill(s * t_p)
        self.just_finished = []

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


def simulate(policy: Policy, hw: Hardware, cfg: EngineConfig, requests: list[SimRequest]) -> SimResult:
    """Run every request to completion. Requests reach the policy at their arrival time (checked at segment
    boundaries); the policy is asked for work at every boundary."""
    eng = Engine(hw, cfg)
    arrivals = sorted(requests, key=lambda r: r.arrival_s)  # stable: file order within a job
    nxt = finished = 0
    while finished < len(requests):
        while nxt < len(arrivals) and arrivals[nxt].arrival_s <= eng.time:
            policy.add(arrivals[nxt])
            nxt += 1
        while (req := policy.peek(eng)) is not None and eng.try_admit(req):
            policy.pop()
        if not eng.running and not eng.prefill:
            if nxt < len(arrivals):
                eng.time = arrivals[nxt].arrival_s  # idle until the next job arrives
                continue
            raise RuntimeError("simulator stalled: nothing running and nothing admissible")
        eng.advance()
        for req in eng.just_finished:
            policy.on_finish(req, eng)
        finished += len(eng.just_finished)
        eng.just_finished = []
        for req in eng.retracted:
            policy.requeue(req)
        eng.retracted = []
    st = eng.stats
    return SimResult(eng.time, st["prompt"], st["output"], st["cached"], st["recomputed"], st["retractions"], eng.steps)
