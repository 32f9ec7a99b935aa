"""CPU default runtime: tokens/s of a 64-request chat batch run together (the runtime batches what arrives
together) vs the same requests one by one. Greedy decoding, same max_tokens; prints both and the ratio.

    .venv/bin/python bench/cpu_model_bench.py [--requests 64] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from blendserve.config import Settings
from blendserve.core.runtime.base import GenerateRequest, SamplingParams
from blendserve.core.runtime.local import LocalRuntime

QUESTIONS = [
    "What is the capital of France?",
    "Give me a synonym for happy.",
    "What is 12 times 3?",
    "Name a planet in the solar system.",
    "Write a haiku about rain.",
    "What does a bee make?",
    "Translate 'thank you' to Spanish.",
    "What color is the sky on a clear day?",
]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()
    rt = LocalRuntime(Settings())
    await rt.start()
    reqs = [
        GenerateRequest(
            f"r{i}-1",
            tuple(rt.tokenizer.encode_chat([{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})"}])),
            SamplingParams(max_new_tokens=args.max_tokens, temperature=0.0),
        )
        for i in range(args.requests)
    ]
    await rt.generate(reqs[0])  # warm-up
    t0 = time.perf_counter()
    together = await asyncio.gather(*(rt.generate(r) for r in reqs))
    t1 = time.perf_counter()
    alone = [await rt.generate(r) for r in reqs]
    t2 = time.perf_counter()
    await rt.close()
    tok_b = sum(r.completion_tokens for r in together)
    tok_s = sum(r.completion_tokens for r in alone)
    print(f"requests {args.requests}, max_tokens {args.max_tokens}, batch size {rt.batch_size}")
    print(f"batched   : {tok_b} tokens in {t1 - t0:.1f} s = {tok_b / (t1 - t0):.1f} tok/s")
    print(f"one by one: {tok_s} tokens in {t2 - t1:.1f} s = {tok_s / (t2 - t1):.1f} tok/s")
    print(f"speed-up  : {(tok_b / (t1 - t0)) / (tok_s / (t2 - t1)):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
