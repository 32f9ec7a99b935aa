"""In-process sglang.Engine (GPU hosts; `pip install blendserve[sglang]`). sglang is imported lazily here only.

The Engine binds its tokenizer-manager loop to the loop of the first generate call, so start() builds it inside
the server's running loop (FastAPI lifespan) and every call uses async_generate from that loop."""

from __future__ import annotations

from blendserve.config import Settings
from blendserve.core.runtime.base import GenerateRequest, GenerateResult, ModelInfo
from blendserve.core.runtime.hf_tokenizer import HFTokenizer
from blendserve.core.runtime.sglang_http import _result, sampling_params
from blendserve.core.sched.perf_model import PerfModel


class SGLangEngineRuntime:
    def __init__(self, settings: Settings, **engine_kwargs) -> None:
        if not settings.model_path:
            raise ValueError("sglang-engine needs BLENDSERVE_MODEL_PATH")
        self.settings = settings
        self.engine_kwargs = {"schedule_policy": "fcfs", **engine_kwargs}
        self.perf = PerfModel.preset(gpu=settings.gpu)
        self.info = ModelInfo(
            settings.model_name or settings.model_path,
            self.perf.kv_capacity_tokens,
            32768,
            self.perf,
            256,
            frozenset({"logprobs", "seed", "n"}),
        )
        self.engine = None
        self.tokenizer: HFTokenizer | None = None

    async def start(self) -> None:
        import sglang  # lazy: GPU hosts only
        from transformers import AutoTokenizer

        self.engine = sglang.Engine(model_path=self.settings.model_path, **self.engine_kwargs)
        server = self.engine.get_server_info()
        self.info.kv_capacity_tokens = int(server.get("max_total_num_tokens") or self.info.kv_capacity_tokens)
        self.info.max_context_tokens = int(server.get("max_req_input_len") or self.info.max_context_tokens)
        self.tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(self.settings.model_path))

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        n = request.params.n
        out = await self.engine.async_generate(
            input_ids=[list(request.input_ids)] * n,
            sampling_params=[sampling_params(request)] * n,
            rid=[f"{request.rid}.{i}" for i in range(n)],
            return_logprob=request.params.logprobs,
            top_logprobs_num=request.params.top_logprobs or None,
        )
        return _result(request, out if isinstance(out, list) else [out])

    async def embed(self, params) -> GenerateResult:
        from blendserve.core.runtime.base import UnsupportedParameter

        raise UnsupportedParameter("Embeddings need an SGLang embedding model.", param="url")

    async def abort(self, rid: str) -> None:
        if self.engine is not None:
            self.engine.tokenizer_manager.abort_request(rid=rid)

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
