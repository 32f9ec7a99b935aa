"""Batch jobs and the workloads made of them (pure, seeded).

A workload is a list of batch jobs. A job is one file of one task: one template or system prompt, one length
profile, one arrival time; its lines are alike. Families and the statistics they follow (token counts are
Llama-3 tokens; "assumed" marks a number with no published statistic behind it):

  chat        system prompt (assumed 200-1200 tokens per job) + a unique user turn, mean 220 tokens, output mean
              190 (ShareGPT: 202 in / 179 out over 500 prompts, vLLM v0.6.0 blog 2024-09-05; 248 / 205 over 300
              prompts, sglang issue #1268); lognormal spread (assumed sigma 0.8: BurstGPT models both lengths as
              heavy-tailed, arXiv 2401.17644). max_tokens 1024-4096 per job.
  fewshot     one shared k-shot prefix per task + a unique question; MMLU: 57 subjects, 5-shot, 1-token answers
              (Hendrycks et al., ICLR 2021); prefix ~600 tokens and question ~90 (assumed: 5 dev examples of
              ~100 tokens). A "suite" job has hundreds of tasks (BIG-bench: 204 tasks, Srivastava et al. 2022) with
              3-shot chain-of-thought prefixes of ~1.5k tokens and ~150-token answers (assumed, BBH-like).
  docqa       thousands of documents of 1-4k tokens (uniform, the issue's RAG shape; LongBench's single-document
              QA sets average 3.6k-4.6k words, Bai et al. 2023, are longer), ~5 questions of ~25 tokens per
              document, each question's line carrying the document it retrieved (so a document's lines are
              scattered through the file); answers mean 60 tokens (assumed: short extractive answers).
  multiturn   conversations whose turn t prompt is the whole history: 2.5 turns on average (WildChat: 2.52,
              Zhao et al. 2024), user turns 70 tokens and assistant turns 215 (LMSYS-Chat-1M: 69.5 / 214.5,
              Zheng et al. 2023). Turn t shares turns 1..t-1 with turn t+1 (growing shared histories); the file
              is a log, so conversations interleave.
  summarize   long unique documents: CNN/DailyMail articles 781 tokens, summaries 56 (See et al. 2017), or arXiv
              papers 4,938 words (~6.4k tokens), abstracts 220 words (~290 tokens) (Cohan et al. 2018).
  longgen     OpenVid-like generation: short prompt, output mean 16K tokens (the BlendServe paper normalises its
              OpenVid class to a 16K mean, arXiv 2411.16102); spread assumed sigma 0.3, max_tokens 32768.
  reasoning   reasoning traces, output mean 6K (assumed, the issue's 4-8K band), max_tokens 16384.
"""

from __future__ import annotations

import itertools
import math
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim.request import SimRequest


def lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)


def _clip(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(x)))


@dataclass(frozen=True)
class JobSpec:
    """One batch job: `family` names a generator below, `weight` its share of the workload's lines."""

    name: str
    family: str
    weight: float
    params: dict = field(default_factory=dict)
    arrival_s: float = 0.0


Line = tuple[tuple[tuple[int, int], ...], int, int]  # segments, output_len, max_tokens


def _chat(rng, ids, n, system=600, max_tokens=2048) -> Iterator[Line]:
    sys_seg = (next(ids), system)
    for _ in range(n):
        out = _clip(lognormal(rng, 190, 0.8), 1, max_tokens)
        yield (sys_seg, (next(ids), _clip(lognormal(rng, 220, 0.8), 4, 8000))), out, max_tokens


def _fewshot(rng, ids, n, tasks=57, prefix=600, question=90, answer=1, max_tokens=16) -> Iterator[Line]:
    instr = (next(ids), 40)
    heads = [(next(ids), _clip(lognormal(rng, prefix, 0.3), 32, 20000)) for _ in range(tasks)]
    for _ in range(n):
        head = rng.choice(heads)
        out = answer if answer <= 1 else _clip(lognormal(rng, answer, 0.5), 1, max_tokens)
        yield (instr, head, (next(ids), _clip(lognormal(rng, question, 0.4), 4, 4000))), out, max_tokens


def _docqa(rng, ids, n, questions=5.0, doc=(1000, 4000), answer=60, max_tokens=512) -> Iterator[Line]:
    instr = (next(ids), 120)
    docs = [(next(ids), rng.randint(*doc)) for _ in range(max(1, round(n / questions)))]
    for _ in range(n):  # each question retrieves its document: one document's questions are scattered
        out = _clip(lognormal(rng, answer, 0.6), 1, max_tokens)
        yield (instr, rng.choice(docs), (next(ids), _clip(lognormal(rng, 25, 0.4), 4, 400))), out, max_tokens


def _multiturn(rng, ids, n, turns=2.5, user=70, assistant=215, system=300, max_tokens=2048) -> Iterator[Line]:
    sys_seg = (next(ids), system)
    timed: list[tuple[float, int, Line]] = []
    while len(timed) < n:
        history: list[tuple[int, int]] = [sys_seg]
        clock = rng.random()  # a log of many conversations: their turns interleave by time
        for _ in range(min(n - len(timed), 1 + int(rng.expovariate(1 / max(1e-9, turns - 1))))):
            history.append((next(ids), _clip(lognormal(rng, user, 0.8), 2, 4000)))
            out = _clip(lognormal(rng, assistant, 0.7), 1, max_tokens)
            timed.append((clock, len(timed), (tuple(history), out, max_tokens)))
            history.append((next(ids), out))  # the client replays the assistant's answer in the next turn
            clock += rng.expovariate(20.0)
    for _, _, line in sorted(timed):
        yield line


def _summarize(rng, ids, n, doc=781, summary=56, max_tokens=512) -> Iterator[Line]:
    instr = (next(ids), 50)
    for _ in range(n):
        out = _clip(lognormal(rng, summary, 0.4), 4, max_tokens)
        yield (instr, (next(ids), _clip(lognormal(rng, doc, 0.5), 32, 30000))), out, max_tokens


def _longgen(rng, ids, n, output=16384, sigma=0.3, prompt=120, max_tokens=32768) -> Iterator[Line]:
    template = (next(ids), 200)
    for _ in range(n):
        out = _clip(lognormal(rng, output, sigma), 16, max_tokens)
        yield (template, (next(ids), _clip(lognormal(rng, prompt, 0.4), 8, 2000))), out, max_tokens


def _reasoning(rng, ids, n, output=6000, sigma=0.5, prompt=150, max_tokens=16384) -> Iterator[Line]:
    return _longgen(rng, ids, n, output=output, sigma=sigma, prompt=prompt, max_tokens=max_tokens)


FAMILIES: dict[str, Callable[..., Iterator[Line]]] = {
    "chat": _chat,
    "fewshot": _fewshot,
    "docqa": _docqa,
    "multiturn": _multiturn,
    "summarize": _summarize,
    "longgen": _longgen,
    "reasoning": _reasoning,
}


def generate(jobs: list[JobSpec], n: int, seed: int) -> list[SimRequest]:
    """n lines split over the jobs by weight (largest remainder), in submission order: job after job."""
    total = sum(j.weight for j in jobs)
    counts = [int(n * j.weight / total) for j in jobs]
    for i in sorted(range(len(jobs)), key=lambda i: -(n * jobs[i].weight / total - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    rng = random.Random(seed)
    ids = itertools.count(1)
    out: list[SimRequest] = []
    for job, count in zip(jobs, counts, strict=True):
        if count <= 0:
            continue
        for segments, output, max_tokens in FAMILIES[job.family](rng, ids, count, **job.params):
            out.append(SimRequest(len(out), segments, output, max_tokens, job.name, job.arrival_s))
    return out


def unique_prompt_tokens(requests: list[SimRequest]) -> int:
    """Prompt tokens with every shared prefix counted once."""
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


def shared_prefix_tokens(requests: list[SimRequest]) -> int:
    """Tokens of the segments that two or more requests share (each counted once)."""
    uses: dict[tuple, int] = {}
    lengths: dict[tuple, int] = {}
    for r in requests:
        key: tuple = ()
        for seg_id, length in r.segments:
            key = key + (seg_id,)
            uses[key] = uses.get(key, 0) + 1
            lengths[key] = length
    return sum(lengths[k] for k, u in uses.items() if u > 1)


def measure(requests: list[SimRequest], perf: PerfModel) -> tuple[float, float]:
    """(rho with shared prefixes computed once, prefix-sharing ratio of prompt tokens)."""
    prompt = sum(r.prompt_len for r in requests)
    unique = unique_prompt_tokens(requests)
    comp = (unique + sum(r.output_len for r in requests)) * perf.comp_per_token
    mem = sum(perf.mem(r.prompt_len, r.output_len) for r in requests)
    return comp / mem, (prompt - unique) / prompt if prompt else 0.0


class TokenPool:
    """Materialises a request's prompt as token ids: each segment id maps to a fixed window of a random pool,
    so equal segments give equal tokens and different segments differ from their first token on (almost
    surely, as with real text)."""

    def __init__(self, size: int = 1 << 21, vocab: int = 128_000, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.pool = array("i", (rng.randrange(vocab) for _ in range(size)))
        self.size = size

    def tokens(self, req: SimRequest) -> array:
        out = array("i")
        for seg_id, length in req.segments:
            if length > self.size // 2:
                raise ValueError(f"segment of {length} tokens exceeds half the token pool")
            off = (seg_id * 2654435761) % (self.size - length)
            out += self.pool[off : off + length]
        return out
