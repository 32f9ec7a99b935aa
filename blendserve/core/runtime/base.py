"""The Runtime contract the dispatcher drives (see ARCHITECTURE.md "Runtime contract").

A runtime knows its model: its name, a tokenizer (text / chat messages -> token ids, with the model's chat
template), its KV capacity in tokens and the constants of the performance model. `generate` takes token ids
and sampling parameters and returns output text, token counts, cached prompt tokens and a finish reason.
Concurrency is bounded by the dispatcher, which also decides the ORDER: runtimes must serve requests in the
order generate() is called (SGLang: --schedule-policy fcfs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from blendserve.core.sched.perf_model import PerfModel


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True)
class EmbedParams:
    """An /v1/embeddings line: one or more inputs, each already token ids."""

    inputs: tuple[tuple[int, ...], ...]
    encoding_format: str = "float"

    # the dispatcher treats every line alike; an embedding line "generates" nothing
    max_new_tokens: int = 1
    n: int = 1


@dataclass(frozen=True)
class EmbedResult:
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int
    simulated: bool = False


@dataclass(frozen=True)
class GenerateRequest:
    rid: str  # unique among requests in flight (row id + attempt)
    input_ids: tuple[int, ...]
    params: SamplingParams
    route: str | None = None  # many workers: the lane (routing key) the request's subtree is pinned to


@dataclass(frozen=True)
class Choice:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" | "length"
    logprobs: list[dict] | None = None


@dataclass(frozen=True)
class GenerateResult:
    rid: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    cached_tokens: int
    retractions: int = 0
    simulated: bool = False

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


class RuntimeError_(Exception):
    """A request failed in the runtime. `retryable` says whether the dispatcher should try again."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsupportedParameter(Exception):
    """The request asks for something this runtime cannot do (a per-line error, not a crash)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class ModelInfo:
    name: str
    kv_capacity_tokens: int
    max_context_tokens: int
    perf: PerfModel
    max_concurrency: int = 64
    supports: frozenset[str] = field(default_factory=frozenset)  # optional features: "logprobs", "seed", "n"


@runtime_checkable
class Tokenizer(Protocol):
    def encode_chat(self, messages: list[dict]) -> list[int]: ...
    def encode_text(self, text: str) -> list[int]: ...


@runtime_checkable
class Runtime(Protocol):
    info: ModelInfo
    tokenizer: Tokenizer

    async def start(self) -> None: ...
    async def generate(self, request: GenerateRequest) -> GenerateResult: ...
    async def embed(self, params: EmbedParams) -> EmbedResult: ...
    async def abort(self, rid: str) -> None: ...
    async def close(self) -> None: ...
