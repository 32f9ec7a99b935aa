"""Named workloads (pure, seeded): the `multibatch` suite and the `paper` suite.

Each workload is a list of jobs (workloads.JobSpec). One job of each workload is its balance job: its share of
the lines is solved (bisection, at the requested size and seed) so the workload hits its target density rho
under the scheduler's perf model; the paper workloads also solve a scale on their shared-prefix lengths to hit a
prefix-sharing ratio. The solved shares are printed by the bench next to measured rho and shared tokens.

multibatch (densities 0.5-1.5; rag-longgen holds shared prefixes far beyond the KV cache):
  rag-longgen     document QA over thousands of 1-4k-token documents + chat + long generation     rho 1.5
  eval-reasoning  MMLU 5-shot + a 200-task few-shot suite + a reasoning job                         rho 1.0
  conversations   multi-turn chats + CNN/DM summaries + chat + long generation                     rho 0.7
  mixed-late      six jobs, the reasoning job submitted 60 s after the others                       rho 0.5
paper: Trace#1-4 of the BlendServe paper (rho {1.4, 1.4, 0.9, 0.9} x sharing {35%, 5%, 35%, 5%}) rebuilt from chat,
MMLU few-shot and OpenVid-like long-generation jobs with job-level templates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim.request import SimRequest
from blendserve.core.sim.workloads import JobSpec, generate, measure


@dataclass(frozen=True)
class Workload:
    name: str
    jobs: tuple[JobSpec, ...]
    rho: float
    balance: str  # the job whose weight is solved for rho
    sharing: float | None = None  # paper traces: target prefix-sharing ratio, solved by scaling shared prefixes


def _j(name: str, family: str, weight: float, arrival_s: float = 0.0, **params) -> JobSpec:
    return JobSpec(name, family, weight, params, arrival_s)


MULTIBATCH = (
    Workload(
        "rag-longgen",
        (
            _j("rag", "docqa", 0.55),
            _j("news-summaries", "summarize", 0.2),
            _j("support-chat", "chat", 0.25, system=800, max_tokens=4096),
            _j("video-gen", "longgen", 0.01),
        ),
        rho=1.5,
        balance="video-gen",
    ),
    Workload(
        "eval-reasoning",
        (
            _j("mmlu", "fewshot", 0.55),
            _j("bench-suite", "fewshot", 0.35, tasks=200, prefix=1500, question=120, answer=150, max_tokens=512),
            _j("math-reasoning", "reasoning", 0.01),
        ),
        rho=1.0,
        balance="math-reasoning",
    ),
    Workload(
        "conversations",
        (
            _j("replay-chats", "multiturn", 0.45),
            _j("news-summaries", "summarize", 0.2),
            _j("assistant", "chat", 0.25, system=400, max_tokens=1024),
            _j("story-gen", "longgen", 0.01),
        ),
        rho=0.7,
        balance="story-gen",
    ),
    Workload(
        "mixed-late",
        (
            _j("chat", "chat", 0.25, system=1200, max_tokens=2048),
            _j("rag", "docqa", 0.25, questions=4.0),
            _j("mmlu", "fewshot", 0.15),
            _j("paper-summaries", "summarize", 0.1, doc=6400, summary=290, max_tokens=1024),
            _j("video-gen", "longgen", 0.01),
            _j("math-reasoning", "reasoning", 0.01, arrival_s=60.0),
        ),
        rho=0.5,
        balance="video-gen",
    ),
)

PAPER = tuple(
    Workload(
        f"trace{i}",
        (
            _j("chat", "chat", 0.6, system=300, max_tokens=1024),
            _j("mmlu", "fewshot", 0.3),
            _j("video-gen", "longgen", 0.1),
        ),
        rho=rho,
        balance="video-gen",
        sharing=sharing,
    )
    for i, (rho, sharing) in enumerate(((1.4, 0.35), (1.4, 0.05), (0.9, 0.35), (0.9, 0.05)), start=1)
)

SUITES = {"multibatch": MULTIBATCH, "paper": PAPER, "all": MULTIBATCH + PAPER}


def _with_weight(jobs: tuple[JobSpec, ...], name: str, weight: float) -> list[JobSpec]:
    return [replace(j, weight=weight) if j.name == name else j for j in jobs]


def _scaled(jobs: list[JobSpec], scale: float) -> list[JobSpec]:
    """Shared-prefix lengths (system prompts, few-shot prefixes) times `scale`."""
    out = []
    for j in jobs:
        params = dict(j.params)
        if j.family == "chat":
            params["system"] = max(8, int(params.get("system", 600) * scale))
        elif j.family == "fewshot":
            params["prefix"] = max(8, int(params.get("prefix", 600) * scale))
        out.append(replace(j, params=params))
    return out


def _bisect(f, lo: float, hi: float, target: float, steps: int = 14) -> float:
    rising = f(hi) > f(lo)
    for _ in range(steps):
        mid = (lo + hi) / 2
        if (f(mid) < target) == rising:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def build(workload: Workload, n: int, perf: PerfModel, seed: int) -> tuple[list[SimRequest], list[JobSpec]]:
    """The workload's n requests for this seed, and the jobs with their solved weights."""
    others = sum(j.weight for j in workload.jobs if j.name != workload.balance)
    jobs = list(workload.jobs)

    def requests(weight: float, scale: float) -> list[SimRequest]:
        return generate(_scaled(_with_weight(workload.jobs, workload.balance, weight), scale), n, seed)

    scale = 1.0
    weight = 0.1
    for _ in range(3 if workload.sharing is not None else 1):
        # the balance job's share of the lines moves rho (either way, by the job): solve it
        weight = _bisect(lambda w, s=scale: measure(requests(w, s), perf)[0], 0.0, 2 * others, workload.rho)
        if workload.sharing is None:
            break
        scale = _bisect(lambda s, w=weight: measure(requests(w, s), perf)[1], 0.01, 8.0, workload.sharing)
    jobs = _scaled(_with_weight(workload.jobs, workload.balance, weight), scale)
    return generate(jobs, n, seed), jobs
