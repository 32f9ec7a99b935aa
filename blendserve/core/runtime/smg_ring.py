"""smg's consistent-hash ring, replayed here, so that each lane's routing key is MINTED to land on one named worker.

smg 1.13.0's `consistent_hashing` policy (model_gateway/src/worker/hash_ring.rs, policies/consistent_hashing.rs)
places every worker URL on a ring at 150 virtual nodes, position = the first 8 bytes (little-endian) of
blake3(f"{url}#{vnode}"), and sends an `X-SMG-Routing-Key` to the first healthy worker at or after
blake3(key)'s position, walking clockwise. The ring is a pure function of the URLs, so the dispatcher can tell
where a key will go before sending it, and pick, for each worker, a key whose ring successor IS that worker:
one lane per worker, deterministically (smg's `manual` policy binds a key on first sight to whichever worker is
least busy at that moment, which may bind two lanes to one worker). A key whose own worker dies walks on to the
next worker clockwise, as smg's `manual` moves it; the fleet re-lanes anyway.

blake3 is not in Python's hashlib: the `blake3` package (the BLAKE3 team's Rust bindings) computes it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from blake3 import blake3

VIRTUAL_NODES_PER_WORKER = 150  # hash_ring.rs VIRTUAL_NODES_PER_WORKER


def position(text: str) -> int:
    """hash_ring.rs hash_position: the first 8 bytes of blake3, little-endian."""
    return int.from_bytes(blake3(text.encode()).digest()[:8], "little")


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
