"""smg's consistent-hash ring, replayed here, so that each lane's routing key is MINTED to land on one named worker.

smg 1.13.0's `consistent_hashing` policy (model_gateway/src/worker/hash_ring.rs, policies/consistent_hashing.rs)
places every worker URL on a ring at 150 virtual nodes, position = the first 8 bytes (little-endian) of
blake3(f"{url}#{vnode}"), and sends an `X-SMG-Routing-Key` to the first healthy worker at or after
blake3(key)'s position, walking clockwise. The ring is a pure function of the URLs, so the dispatcher can tell
where a key will go before sending it, and pick, for each worker, a key whose ring successor IS that worker:
one lane per worker, deterministically (smg's `manual` policy binds a key on first sight to whichever worker is
least busy at that moment, which may bind two lanes to one worker). A key whose own worker dies walks on to the
next worker clockwise, as smg's `manual` moves it; the fleet re-lanes anyway.

blake3 is not in Python's hashlib; the keys and vnode names are short (< 1 KiB, one chunk), so the one-chunk
case of the reference algorithm below is all that is needed (checked against the spec's test vectors in tests).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable

VIRTUAL_NODES_PER_WORKER = 150  # hash_ring.rs VIRTUAL_NODES_PER_WORKER
_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_PERM = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_CHUNK_START, _CHUNK_END, _ROOT = 1, 2, 8
_M32 = 0xFFFFFFFF


def _g(v: list[int], a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    v[a] = (v[a] + v[b] + x) & _M32
    v[d] = ((v[d] ^ v[a]) >> 16 | (v[d] ^ v[a]) << 16) & _M32
    v[c] = (v[c] + v[d]) & _M32
    v[b] = ((v[b] ^ v[c]) >> 12 | (v[b] ^ v[c]) << 20) & _M32
    v[a] = (v[a] + v[b] + y) & _M32
    v[d] = ((v[d] ^ v[a]) >> 8 | (v[d] ^ v[a]) << 24) & _M32
    v[c] = (v[c] + v[d]) & _M32
    v[b] = ((v[b] ^ v[c]) >> 7 | (v[b] ^ v[c]) << 25) & _M32


def _compress(cv: tuple[int, ...], block: bytes, block_len: int, flags: int) -> list[int]:
    m = list(struct.unpack("<16I", block))
    v = [*cv, *_IV[:4], 0, 0, block_len, flags]  # counter 0: one chunk
    for round_ in range(7):
        _g(v, 0, 4, 8, 12, m[0], m[1])
        _g(v, 1, 5, 9, 13, m[2], m[3])
        _g(v, 2, 6, 10, 14, m[4], m[5])
        _g(v, 3, 7, 11, 15, m[6], m[7])
        _g(v, 0, 5, 10, 15, m[8], m[9])
        _g(v, 1, 6, 11, 12, m[10], m[11])
        _g(v, 2, 7, 8, 13, m[12], m[13])
        _g(v, 3, 4, 9, 14, m[14], m[15])
        if round_ < 6:
            m = [m[i] for i in _PERM]
    return [v[i] ^ v[i + 8] for i in range(8)] + [v[i + 8] ^ cv[i] for i in range(8)]


def blake3(data: bytes) -> bytes:
    """The 32-byte blake3 hash of data shorter than one chunk (1,024 bytes)."""
    if len(data) > 1024:
        raise ValueError("one-chunk blake3 only (routing keys and worker URLs are short)")
    blocks = [data[i : i + 64] for i in range(0, len(data), 64)] or [b""]
    cv: tuple[int, ...] = _IV
    out: list[int] = []
    for i, block in enumerate(blocks):
        flags = (_CHUNK_START if i == 0 else 0) | (_CHUNK_END | _ROOT if i == len(blocks) - 1 else 0)
        out = _compress(cv, block.ljust(64, b"\0"), len(block), flags)
        cv = tuple(out[:8])
    return struct.pack("<8I", *out[:8])


def position(text: str) -> int:
    """hash_ring.rs hash_position: the first 8 bytes of blake3, little-endian."""
    return int.from_bytes(blake3(text.encode())[:8], "little")


class HashRing:
    """smg's ring over worker URLs (exactly as /workers lists them)."""

    def __init__(self, urls: Iterable[str]) -> None:
        entries = sorted((position(f"{url}#{vnode}"), url) for url in urls for vnode in range(VIRTUAL_NODES_PER_WORKER))
        self._positions = [pos for pos, _ in entries]
        self._urls = [url for _, url in entries]

    def owner(self, key: str, healthy: frozenset[str] | None = None) -> str | None:
        """The worker smg sends `key` to: the first (healthy) URL at or after the key's position, clockwise."""
        if not self._urls:
            return None
        start = bisect.bisect_left(self._positions, position(key))
        for i in range(len(self._urls)):
            url = self._urls[(start + i) % len(self._urls)]
            if healthy is None or url in healthy:
                return url
        return None

    def key_for(self, url: str, prefix: str) -> str:
        """A routing key `prefix-N` whose ring successor is `url` itself (so it stays there whatever the health of
        the others). With W workers about one key in W qualifies: a few tries each."""
        for n in range(100_000):
            key = f"{prefix}-{n}"
            if self.owner(key) == url:
                return key
        raise ValueError(f"no routing key found for {url}")  # unreachable while url is on the ring
