"""Decode pacing for engines that run a step's operators in sequence (SGLang, mixed chunks or not). Pure.

While a long generation runs, the schedule cannot end before it does: its remaining decode steps are the critical
path. Each of those steps reads the weights once, whether it decodes one line or a ridge's worth (weight read
time / compute time per token: 243 lines for Llama-3.1-8B on an H100 by the perf model), so lines that decode
beside it cost no extra GEMM time up to the ridge. Admitting greedily instead runs the other work in a few wide,
compute-bound decode batches (each line then pays its own compute) and leaves the critical path to decode alone
in weight-bound steps at the end. Pacing caps the lines in flight at

    max(ridge, SLACK * output tokens left / critical-path steps left)

so the other work spreads over the critical path and still ends before it (SLACK > 1: estimates err). Without a
long generation the second term is far above what the KV cache holds, and pacing changes nothing.
An engine that overlaps compute with memory (NanoFlow-like) hides a wide batch's compute: no pacing there.

While the cap binds, lines start in waves: a line that starts alone is a prefill step of its own (SGLang runs
waiting prefills before decodes), and a step of fewer new tokens than the ridge costs a whole weight read. So no
line starts until the free slots hold a wave whose new prompt tokens (the pending lines' mean, shared prefixes
once) reach the ridge, or half the cap, whichever is fewer.

Steps are counted without a clock: a virtual decode-step clock, which a finished line moves to at least its
admission's clock plus its output length (lines admitted together decode together).
"""

from __future__ import annotations

from blendserve.core.sched.perf_model import PerfModel

SLACK = 1.2  # the other work is paced to end by 1/SLACK of the critical path: room for estimates that err


def ridge_lines(perf: PerfModel) -> float:
    """Decode lines per step at which a step's GEMM compute reaches its weight read (the perf model's ridge)."""
    return perf.weight_read_time / perf.comp_per_token


class DecodePacer:
    """How many lines may be in flight now. Contract: admitted() for each line that starts, finished() when it
    ends with a known output length, left() when it ends otherwise (an unknown key is ignored by both); cap()
    never raises and is at least `ridge`."""

    def __init__(self, ridge: float, slack: float = SLACK) -> None:
        self.ridge, self.slack = ridge, slack
        self.clock = 0.0  # virtual decode steps
        self.spans: dict[object, tuple[float, float]] = {}  # in flight: key -> (start step, estimated end step)
        self.sum_ends = 0.0
        # the in-flight line that ends last, found again (a pass over the lines in flight) only when it left: the
        # same line stays the latest for a long generation's whole run; a heap cost ~2 us a line at 1M lines
        self._latest: tuple[object, float] | None = None

    def admitted(self, key: object, d_est: float) -> None:
        end = self.clock + d_est
        self.spans[key] = (self.clock, end)
        self.sum_ends += end
        if self._latest is None or end > self._latest[1]:
            self._latest = (key, end)

    def finished(self, key: object, output_tokens: int) -> None:
        span = self.left(key)
        if span is not None:
            self.clock = max(self.clock, span[0] + output_tokens)

    def left(self, key: object) -> tuple[float, float] | None:
        span = self.spans.pop(key, None)
        if span is not None:
            self.sum_ends -= span[1]
            if not self.spans:
                self.sum_ends, self._latest = 0.0, None  # no float drift across idle periods
        return span

    def cap(self, pending_tokens: float, pending_longest: float) -> float:
        """Lines allowed in flight, given the pending lines' estimated output tokens and the longest of them."""
        n = len(self.spans)
        critical = max(pending_longest, self._latest_end() - self.clock)
        if critical <= 0:
            return float("inf")
        work = max(float(n), self.sum_ends - n * self.clock) + pending_tokens  # a line past its estimate: >= 1
        return max(self.ridge, self.slack * work / critical)

    def room(
        self, in_flight: int, taken: list[float], pending_tokens: float, pending_longest: float, prompt_per_line: float
    ) -> int:
        """Lines that may start now beside `in_flight` ones and `taken` ones (estimated lengths of lines taken but
        not yet admitted()), given the pending lines' estimated output tokens, the longest of them, and their new
        prompt tokens per line; at least one when nothing would run. While the cap binds, lines start in waves."""
        cap = self.cap(pending_tokens + sum(taken), max([pending_longest, *taken]))
        room = cap - in_flight - len(taken)
        if in_flight and room < min(self.ridge / max(1.0, prompt_per_line), cap / 2):
            return 0
        return max(0 if in_flight or taken else 1, int(min(room, 1 << 30)))

    def _latest_end(self) -> float:
        latest = self._latest
        if latest is not None and self.spans.get(latest[0], (0.0, None))[1] == latest[1]:
            return latest[1]
        if not self.spans:
            return self.clock
        key, (_, end) = max(self.spans.items(), key=lambda item: item[1][1])
        self._latest = (key, end)
        return end


class Unpaced(DecodePacer):
    """No pacing (an engine that overlaps compute and memory): nothing is tracked, room is unbounded."""

    def __init__(self) -> None:
        super().__init__(ridge=float("inf"))

    def admitted(self, key: object, d_est: float) -> None:
        pass

    def left(self, key: object) -> tuple[float, float] | None:
        return None

    def room(self, *_: object) -> int:
        return 1 << 30
