"""Helpers for tests that drive the sglang-http adapter against the stand-in."""

from __future__ import annotations

import asyncio
import time

import httpx

from blendserve.core.runtime.base import GenerateRequest, HealthState, SamplingParams
from blendserve.core.runtime.sglang_http import SGLangHTTPRuntime
from blendserve.core.sched.perf_model import PerfModel

CHAT = [{"role": "user", "content": "hello"}]


def _rt(url: str, **kwargs) -> SGLangHTTPRuntime:
    return SGLangHTTPRuntime(url, PerfModel.preset(gpu="h100"), **kwargs)


async def _ready(rt: SGLangHTTPRuntime, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while (await rt.health()).state != HealthState.READY:
        assert time.monotonic() < deadline, await rt.health()
        await asyncio.sleep(0.05)


def _req(rid: str, ids, **params) -> GenerateRequest:
    return GenerateRequest(rid, tuple(ids), SamplingParams(**{"max_new_tokens": 8, **params}))


def _faults(url: str, **spec) -> None:
    httpx.post(url + "/_faults", json=spec).raise_for_status()
