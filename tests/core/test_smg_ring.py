"""smg's consistent-hash ring replayed (runtime/smg_ring.py): blake3 against the spec's vectors, and minted keys
that land on their own worker whatever the health of the others. The real gateway's agreement is checked by
tests/e2e/test_smg_gateway.py (every worker gets its lane's lines)."""

from __future__ import annotations

from blendserve.core.runtime.smg_ring import HashRing, blake3


def test_blake3_matches_the_reference_vectors():
    assert blake3(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert blake3(b"abc").hex() == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    # the official test vector input: bytes 0..250 repeating, 1023 bytes (16 blocks, the last partial)
    data = bytes(i % 251 for i in range(1023))
    assert blake3(data).hex().startswith("10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11")


def test_each_worker_gets_a_key_of_its_own_that_survives_the_others_going_down():
    urls = [f"http://10.0.0.{i}:30000" for i in range(5)]
    ring = HashRing(urls)
    keys = {url: ring.key_for(url, "lane") for url in urls}
    assert len(set(keys.values())) == len(urls)
    for url, key in keys.items():
        assert ring.owner(key) == url
        others_down = frozenset({url})
        assert ring.owner(key, others_down) == url
    dead = urls[0]
    moved = ring.owner(keys[dead], frozenset(urls[1:]))
    assert moved in urls[1:]  # a lost worker's key walks on clockwise, as smg does
