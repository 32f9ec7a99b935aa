"""Token ids exactly as SGLang renders them, through its POST /v1/tokenize (so cache prefixes match).

Chat lines are sent as {"messages": ...} WITHOUT add_generation_prompt: with that field SGLang switches to a
"render as given" mode (srt/entrypoints/openai/protocol.py:1763-1792) that answers 400 for built-in templates
(serving_tokenize.py:100-107) and renders a trailing assistant message unlike a chat completion
(serving_chat.py:2154-2160). Omitted, the messages are rendered as for a chat completion. Text lines are sent
as {"prompt": ...}, encoded with special tokens as SGLang encodes a text prompt.

Calls are blocking (the dispatcher runs them in a thread) and bounded: a connect timeout, a read timeout,
two tries. A 400 is the line's own fault (UnsupportedParameter); refused connections are RuntimeUnavailable;
5xx, timeouts and malformed answers are retryable RuntimeFailure."""

from __future__ import annotations

import time

import httpx

from blendserve.core.runtime.base import RuntimeFailure, RuntimeUnavailable, UnsupportedParameter


class HTTPTokenizer:
    def __init__(self, base_url: str, timeout_s: float = 30.0, connect_s: float = 5.0, tries: int = 2) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout_s, connect=connect_s))
        self.tries = tries

    def _tokens(self, payload: dict, param: str) -> list[int]:
        error: Exception | None = None
        for attempt in range(self.tries):
            if attempt:
                time.sleep(0.5)
            try:
                return self._once(payload, param)
            except UnsupportedParameter:
                raise
            except RuntimeFailure as exc:
                error = exc
        raise error  # type: ignore[misc]

    def _once(self, payload: dict, param: str) -> list[int]:
        try:
            resp = self.client.post("/v1/tokenize", json=payload)
        except httpx.ConnectError as exc:
            raise RuntimeUnavailable(f"SGLang /v1/tokenize unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RuntimeFailure(f"SGLang /v1/tokenize failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code in (400, 422):
            raise UnsupportedParameter(f"SGLang cannot tokenize this line: {_message(resp)}", param=param)
        if resp.status_code != 200:
            raise RuntimeFailure(f"SGLang /v1/tokenize answered {resp.status_code}: {resp.text[:200]}")
        try:
            tokens = resp.json()["tokens"]
            if not all(isinstance(t, int) for t in tokens):
                raise TypeError("tokens are not ints")
            return list(tokens)
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeFailure(f"SGLang /v1/tokenize answered malformed JSON: {exc}") from exc

    def encode_text(self, text: str) -> list[int]:
        return self._tokens({"prompt": text}, "prompt")

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return self._tokens({"messages": messages}, "messages")

    def close(self) -> None:
        self.client.close()


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300]
