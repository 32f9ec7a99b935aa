"""The perf-model simulator as a runtime, for load tests and benchmarks. Outputs say they are simulated.

Output lengths are drawn deterministically from the request id (so retries agree), capped by max_new_tokens;
cached_tokens comes from a block-hash prefix cache (16-token blocks, LRU bounded by the KV capacity), as a
radix cache would report it. `time_scale` > 0 sleeps the modelled decode time (scaled); 0 answers at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from blendserve.core.runtime.base import (
    Choice,
    EmbedParams,
    EmbedResult,
    GenerateRequest,
    GenerateResult,
    Health,
    HealthState,
    ModelInfo,
)
from blendserve.core.sched.perf_model import PerfModel

BLOCK = 16


class ByteTokenizer:
    """Deterministic stand-in tokenizer: one token per UTF-8 byte, chat rendered ChatML-style."""

    def encode_text(self, text: str) -> array:
        # int32 straight from the bytes (each byte the low byte of a little-endian int32): 25x faster than
        # array("i", list(data)), and the tree keeps int32 arrays as they are (no per-token conversion)
        data = text.encode()
        wide = bytearray(4 * len(data))
        wide[(0 if sys.byteorder == "little" else 3) :: 4] = data
        out = array("i")
        out.frombytes(wide)
        return out

    def encode_chat(self, messages: list[dict]) -> array:
        rendered = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return self.encode_text(rendered + "<|im_start|>assistant\n")


class SimulatedRuntime:
    def __init__(
        self,
        perf: PerfModel | None = None,
        model_name: str = "simulated",
        time_scale: float = 0.0,
        max_concurrency: int = 256,
        timeout_s: float = 600.0,
    ) -> None:
        perf = perf or PerfModel.preset()
        self.info = ModelInfo(
            model_name, perf.kv_capacity_tokens, 32768, perf, max_concurrency, frozenset({"seed", "n", "embeddings"})
        )
        self.tokenizer = ByteTokenizer()
        self.time_scale = time_scale
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._max_blocks = max(1, perf.kv_capacity_tokens // BLOCK)
        self.calls = 0
        self.timeout_s = timeout_s

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(HealthState.READY)

    def deadline_s(self, request: GenerateRequest) -> float:
        return self.timeout_s

    async def abort(self, rids: Sequence[str]) -> None:
        return None

    def _cached(self, ids: Sequence[int]) -> int:
        # Chained block keys over the prompt's int32 bytes, 16 tokens (64 bytes) at a time, with Python's own
        # hash: a blake2b digest per block (or str() of each slice, before) cost ~0.5-1 ms a request and made
        # this "instant" runtime the whole-server bench's bottleneck. A 64-bit collision only misreports a
        # simulated cache hit.
        raw = (ids if isinstance(ids, array) else array("i", ids)).tobytes()
        cached, key, hit = 0, 0, True
        step = BLOCK * 4
        for start in range(0, len(raw) - len(raw) % step, step):
            key = hash((key, raw[start : start + step]))
            if hit and key in self._blocks:
                cached += BLOCK
                self._blocks.move_to_end(key)
            else:
                hit = False
                self._blocks[key] = None
                if len(self._blocks) > self._max_blocks:
                    self._blocks.popitem(last=False)
        return cached

    async def embed(self, params: EmbedParams) -> EmbedResult:
        """Deterministic unit vectors from the token ids (simulated, 64 dimensions)."""
        vectors = []
        for ids in params.inputs:
            digest = hashlib.blake2b(str(ids).encode(), digest_size=64).digest()
            raw = [b - 127.5 for b in digest]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append(tuple(x / norm for x in raw))
        return EmbedResult(tuple(vectors), sum(len(i) for i in params.inputs), simulated=True)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        self.calls += 1
        base_rid = request.rid.rsplit("-", 1)[0]  # the attempt suffix must not change the answer
        seed = int.from_bytes(hashlib.blake2b(base_rid.encode(), digest_size=4).digest(), "little")
        n_out = max(1, min(request.params.max_new_tokens, 1 + seed % 200))
        cached = self._cached(request.input_ids)
        if self.time_scale > 0:
            perf = self.info.perf
            await asyncio.sleep(
                self.time_scale
                * (perf.comp(len(request.input_ids) - cached, n_out) + perf.mem(len(request.input_ids), n_out))
            )
        finish = "length" if n_out == request.params.max_new_tokens else "stop"
        text = f"[simulated output: {n_out} tokens]"
        choices = tuple(Choice(text, n_out, finish) for _ in range(request.params.n))
        return GenerateResult(request.rid, choices, len(request.input_ids), cached, simulated=True)
