"""The Runtime contract the dispatcher drives (see ARCHITECTURE.md "Runtime contract").

A runtime knows its model: its name, a tokenizer (text / chat messages -> token ids, with the model's chat
template), its KV capacity in tokens, its input limit and the constants of the performance model. `generate`
takes token ids and sampling parameters and returns output text, token counts, cached prompt tokens and a
finish reason. Concurrency is bounded by the dispatcher, which also decides the ORDER: runtimes must serve
requests in the order generate() is called (SGLang: --schedule-policy fcfs).

Errors are typed, and the dispatcher acts on the type alone:
- `UnsupportedParameter`: this line can never succeed here (bad parameter, prompt too long, a template that
  rejects the messages). Fail the line alone with a 400 body; do not retry; the runtime is healthy.
- `RuntimeFailure` with `retryable=True`: transport error, 5xx, timeout, malformed answer, an abort the
  dispatcher did not ask for. Retry with a new rid (attempt suffix) after a backoff.
- `RuntimeUnavailable` (a retryable `RuntimeFailure`): the runtime is down or not ready yet. Do not spend the
  line's attempt: put it back and let the circuit breaker (health()) decide when to resume.
- `RuntimeFailure` with `retryable=False`: the runtime answered, but this line failed for good.
- `Aborted`: the request was aborted through abort(); the dispatcher asked for it, so it drops the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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
    rid: str  # unique among requests in flight (row id + attempt); copies of an n>1 request run as rid.0, rid.1..
    input_ids: Sequence[int]  # the int32 array the tree restored (read only): no per-token copy per dispatch
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


class RuntimeFailure(Exception):
    """A request failed in the runtime. `retryable` says whether the dispatcher should try again."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class RuntimeUnavailable(RuntimeFailure):
    """The runtime is down or not ready: retryable, and not the line's fault (do not spend its attempt)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class Aborted(RuntimeFailure):
    """The request was aborted by abort(); the caller asked for it and drops the line's result."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class UnsupportedParameter(Exception):
    """The request asks for something this runtime cannot do (a per-line error, not a crash)."""

    retryable = False

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class HealthState(StrEnum):
    STARTING = "starting"  # not connected yet (model loading, server not up): wait, do not fail lines
    READY = "ready"
    DOWN = "down"  # was up, does not answer now


@dataclass(frozen=True)
class Health:
    state: HealthState
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.state == HealthState.READY


@dataclass
class ModelInfo:
    name: str
    kv_capacity_tokens: int
    max_context_tokens: int  # prompt + output tokens of one request
    perf: PerfModel
    max_concurrency: int = 64
    supports: frozenset[str] = field(default_factory=frozenset)  # optional features: "logprobs", "seed", "n"
    max_input_tokens: int | None = None  # prompts must be SHORTER than this (SGLang: max_req_input_len)

    def input_limit(self) -> int:
        return self.max_input_tokens if self.max_input_tokens is not None else self.max_context_tokens


@runtime_checkable
class Tokenizer(Protocol):
    """Text / chat messages -> the token ids the runtime itself would compute for them.

    Raises UnsupportedParameter when the runtime's template or tokenizer rejects the input (per line), and
    RuntimeFailure (retryable) or RuntimeUnavailable when a remote tokenizer fails, times out or is down.
    Calls are blocking and bounded in time: the dispatcher runs them in a worker thread."""

    def encode_chat(self, messages: list[dict]) -> Sequence[int]: ...
    def encode_text(self, text: str) -> Sequence[int]: ...


@runtime_checkable
class Runtime(Protocol):
    info: ModelInfo

    @property
    def tokenizer(self) -> Tokenizer:
        """The runtime's own tokenizer (read-only here: an implementation's may be a narrower type)."""

    async def start(self) -> None:
        """Begin connecting or loading; returns promptly (seconds, never minutes) and does not raise because
        the backend is down: health() reports STARTING until it is ready. Raises only on bad configuration."""

    async def health(self) -> Health:
        """The runtime's state now, answered within about 2 s; never raises. The circuit breaker calls it
        while dispatch is paused and may call it every second: implementations cache briefly."""

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """Run one request (n copies). Raises the typed errors of this module's docstring; cancelling the
        awaiting task abandons the request (remote runtimes also abort it on disconnect)."""

    def deadline_s(self, request: GenerateRequest) -> float:
        """Seconds the caller should wait for generate(request) before cancelling it (then abort() it and
        retry): derived from max_new_tokens x n and the decode rate measured on this runtime, with slack for
        queueing, bounded by the configured request timeout."""

    async def embed(self, params: EmbedParams) -> EmbedResult: ...

    async def abort(self, rids: Sequence[str]) -> None:
        """Abort the requests sent as generate(GenerateRequest(rid, ...)) for each rid given, every copy of
        an n>1 request included, whether the task awaiting generate() is still waiting or was cancelled first.
        Safe for unknown, finished or already aborted rids (nothing runs under them: no effect); best effort,
        bounded in time, never raises. A generate() still awaited raises Aborted; the runtime's KV and slots
        are freed. Call it on cancel, on expiry and when a deadline_s() timeout gives up on an attempt."""

    async def close(self) -> None: ...
