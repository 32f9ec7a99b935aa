"""A stand-in for an SGLang 0.5.23 server, faithful where our adapters meet it (see tests/fakes/sglang/):
SGLang's own /generate contract codec, its sampling checks and length limits, a real tokenizer and chat
template behind both /v1/tokenize modes, a page-aligned LRU radix cache under a KV cap for cached_tokens,
abort by exact rid, logprob tuples, DP ranks in /server_info, and injectable faults (POST /_faults).

Run one as a process:  python -m tests.fakes.sglang_standin --port P --kv-capacity N [--dp-size D ...]"""

from __future__ import annotations

from tests.fakes.sglang.app import build_app
from tests.fakes.sglang.contract import SAMPLING_KEYS, SKIP_REASON, api_types, contract_error
from tests.fakes.sglang.server import StandinServer, load_tokenizer, main

__all__ = [
    "SAMPLING_KEYS",
    "SKIP_REASON",
    "StandinServer",
    "api_types",
    "build_app",
    "contract_error",
    "load_tokenizer",
]

if __name__ == "__main__":
    main()
