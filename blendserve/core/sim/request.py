"""What the simulator runs: requests, results, and the admission-order protocol (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from blendserve.core.sim.engine import Engine


@dataclass(frozen=True, slots=True)
class SimRequest:
    rid: int
    segments: tuple[tuple[int, int], ...]  # (segment id, token length); shared segments have shared ids
    output_len: int  # the true output length (the engine learns it only when the request finishes)
    max_tokens: int
    job: str = ""  # the batch job (file) it belongs to
    arrival_s: float = 0.0  # when its job was submitted

    @property
    def prompt_len(self) -> int:
        return sum(length for _, length in self.segments)


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


class Policy(Protocol):
    """Decides admission order. add() hands over requests as they arrive; peek/pop give the next one; requeue
    takes back one the engine retracted (it goes first again); on_finish reports the true output length."""

    def add(self, req: SimRequest) -> None: ...
    def peek(self, engine: Engine) -> SimRequest | None: ...
    def pop(self) -> SimRequest: ...
    def requeue(self, req: SimRequest) -> None: ...
    def on_finish(self, req: SimRequest, engine: Engine) -> None: ...


class ListPolicy:
    """Arrival order (FCFS: job after job, lines in file order). Subclasses reorder what arrived together."""

    def __init__(self, order: list[SimRequest] | None = None) -> None:
        self.queue: deque[SimRequest] = deque(order or ())
        self.arrived: list[SimRequest] = []

    def add(self, req: SimRequest) -> None:
        self.arrived.append(req)

    def arrange(self, arrived: list[SimRequest]) -> None:
        self.queue.extend(arrived)

    def peek(self, engine: Engine) -> SimRequest | None:
        if self.arrived:
            arrived, self.arrived = self.arrived, []
            self.arrange(arrived)
        return self.queue[0] if self.queue else None

    def pop(self) -> SimRequest:
        return self.queue.popleft()

    def requeue(self, req: SimRequest) -> None:
        self.queue.appendleft(req)

    def on_finish(self, req: SimRequest, engine: Engine) -> None:
        pass
