"""Token id -> its exact bytes and text, from the model's own vocabulary (for logprobs).

Decoding one id at a time (what SGLang's return_text_in_logprobs does) turns a token that holds part of a
UTF-8 character into U+FFFD; OpenAI's `bytes` must be the token's real bytes, so they come from the vocab:
byte-level BPE (GPT-2/Llama-3/Qwen/SmolLM) maps each char back to its byte; SentencePiece byte fallback
spells raw bytes as <0xAB> and spaces as U+2581."""

from __future__ import annotations

import json
import re
from functools import lru_cache

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _decoder_kind(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "plain"
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = {decoder.get("type")} | {d.get("type") for d in decoder.get("decoders") or []}
    if "ByteLevel" in kinds:
        return "byte_level"
    if "ByteFallback" in kinds or "Metaspace" in kinds:
        return "sentencepiece"
    return "plain"


class TokenText:
    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.kind = _decoder_kind(tokenizer)
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._cache: dict[int, bytes] = {}

    def bytes_of(self, token_id: int) -> bytes:
        cached = self._cache.get(token_id)
        if cached is None:
            cached = self._cache[token_id] = self._bytes(token_id)
        return cached

    def text_of(self, token_id: int) -> str:
        return self.bytes_of(token_id).decode("utf-8", errors="replace")

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tok.convert_ids_to_tokens(int(token_id))
        if piece is None:
            return b""
        if token_id in self.special:
            return piece.encode()
        if self.kind == "byte_level":
            table = _unicode_to_byte()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        if self.kind == "sentencepiece":
            raw = _BYTE_PIECE.match(piece)
            return bytes([int(raw.group(1), 16)]) if raw else piece.replace("\u2581", " ").encode()
        return self.tok.decode([int(token_id)]).encode()

    def entry(self, logprob: float, token_id: int, top: list[tuple[float, int]] | None) -> dict:
        """One OpenAI chat logprobs `content` entry."""
        return {
            "token": self.text_of(token_id),
            "logprob": logprob,
            "bytes": list(self.bytes_of(token_id)),
            "top_logprobs": [
                {"token": self.text_of(t), "logprob": v, "bytes": list(self.bytes_of(t))} for v, t in top or []
            ],
        }
