"""Builds the configured runtime. Heavy imports (torch, sglang) happen only for the runtime chosen."""

from __future__ import annotations

from typing import Any

from blendserve.config import Settings
from blendserve.core.runtime.base import Runtime
from blendserve.core.sched.perf_model import PerfModel


def build_runtime(settings: Settings) -> Runtime:
    if settings.runtime == "simulated":
        from blendserve.core.runtime.simulated import SimulatedRuntime

        return SimulatedRuntime(
            PerfModel.preset(gpu=settings.gpu),
            settings.model_name or "simulated",
            time_scale=settings.simulated_time_scale,
            timeout_s=settings.request_timeout_s,
        )
    if settings.runtime == "local":
        from blendserve.core.runtime.local import LocalRuntime

        return LocalRuntime(settings)
    if settings.runtime == "sglang-http":
        from blendserve.core.runtime.sglang_http import SGLangHTTPRuntime

        return SGLangHTTPRuntime(settings.sglang_url, **_sglang_options(settings))
    if settings.runtime == "sglang-gateway":
        from blendserve.core.runtime.gateway import GatewayRuntime

        return GatewayRuntime(settings.sglang_url, **_sglang_options(settings))
    if settings.runtime == "sglang-engine":
        from blendserve.core.runtime.sglang_engine import SGLangEngineRuntime

        return SGLangEngineRuntime(settings)
    raise ValueError(f"no runtime for {settings.runtime!r}")


def _sglang_options(settings: Settings) -> dict[str, Any]:
    """What one SGLang server and the gateway in front of many are both built with, besides the URL."""
    return {
        "perf": PerfModel.preset(gpu=settings.gpu),
        "timeout_s": settings.request_timeout_s,
        "model_name": settings.model_name,
        "info_timeout_s": settings.sglang_info_timeout_s,
        "tokenize_timeout_s": settings.sglang_tokenize_timeout_s,
        "tokenizer_path": settings.tokenizer_path or settings.model_path,  # logprobs' token bytes (vocabulary)
    }
