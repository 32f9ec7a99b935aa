"""Fake but deterministic generation with SGLang's /generate item shape (meta_info, finish_reason dicts,
(logprob, token_id, text|None) logprob tuples), a radix cache for cached_tokens, and abort by exact rid.

Every output starts with the tokens of " 日本語 ok" (byte-level BPE splits these characters across tokens,
so per-token text shows U+FFFD as SGLang's does), followed by a few prompt-dependent tokens, then EOS."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.fakes.sglang.radix import RadixCache

PHRASE = " 日本語 ok"


class Generator:
    def __init__(self, tokenizer, cache: RadixCache, decode_s: float = 0.0) -> None:
        self.tok, self.cache, self.decode_s = tokenizer, cache, decode_s
        self.eos = tokenizer.eos_token_id
        self.phrase = tokenizer.encode(PHRASE, add_special_tokens=False)
        self.stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "aborted": 0}

    def _natural(self, ids: list[int], seed: int | None) -> list[int]:
        extra = 2 + (len(ids) + (seed or 0)) % 5
        filler = [1000 + (sum(ids[-4:]) * 31 + 17 * i + (seed or 0)) % 20000 for i in range(extra)]
        return self.phrase + filler + [self.eos]

    async def run(self, ids: list[int], p: dict, rid: str, logprob: tuple | None, abort: asyncio.Event) -> dict:
        started = time.monotonic()
        cached, held = self.cache.match(ids)
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(ids)
        self.stats["cached_tokens"] += cached
        try:
            natural = self._natural(ids, p.get("sampling_seed"))
            limit = p.get("max_new_tokens", 128)
            out = natural[:limit]
            if self.decode_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(abort.wait(), timeout=self.decode_s * max(1, len(out)))
            if abort.is_set():
                self.stats["aborted"] += 1
                return _item(rid, [], "", {"type": "abort", "message": "Abort in waiting queue"}, ids, cached, started)
            self.cache.insert(ids + out)
        finally:
            self.cache.release(held)
        finish = (
            {"type": "stop", "matched": self.eos}
            if out and out[-1] == self.eos
            else {"type": "length", "length": limit}
        )
        item = _item(rid, out, self.tok.decode(out, skip_special_tokens=True), finish, ids, cached, started)
        if logprob is not None:
            item["meta_info"].update(self._logprobs(out, *logprob))
        return item

    def _logprobs(self, out: list[int], top_n: int, with_text: bool) -> dict:
        def text(t: int) -> str | None:  # one id at a time, as tokenizer_manager.py:3113 does
            return self.tok.batch_decode([[t]])[0] if with_text else None

        tokens = [(-0.05 * (1 + i % 4), t, text(t)) for i, t in enumerate(out)]
        tops = [
            [(lp - 0.5 * k, (t + k) % 20000 if k else t, text((t + k) % 20000 if k else t)) for k in range(top_n)]
            if top_n
            else None
            for lp, t, _ in tokens
        ]
        return {
            "input_token_logprobs": [],
            "output_token_logprobs": tokens,
            "input_top_logprobs": [],
            "output_top_logprobs": tops,
            "output_token_logprobs_length": len(tokens),
        }


def _item(rid: str, out: list[int], text: str, finish: dict, ids: list[int], cached: int, started: float) -> dict:
    return {
        "text": text,
        "output_ids": out,
        "meta_info": {
            "id": rid,
            "finish_reason": finish,
            "prompt_tokens": len(ids),
            "completion_tokens": len(out),
            "cached_tokens": cached,
            "reasoning_tokens": 0,
            "weight_version": "default",
            "num_retractions": 0,
            "e2e_latency": time.monotonic() - started,
        },
    }
