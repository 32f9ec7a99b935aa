"""smg's consistent-hash ring replayed (runtime/smg_ring.py): ring positions, and minted keys
that land on their own worker whatever the health of the others. The real gateway's agreement is checked by
tests/e2e/test_smg_gateway.py (every worker gets its lane's lines)."""

from __future__ import annotations

from blendserve.core.runtime.smg_ring import VIRTUAL_NODES_PER_WORKER, HashRing, position


def test_ring_positions_are_blake3_le64_of_url_and_vnode():
    """hash_ring.rs: position = first 8 bytes of blake3(f"{url}#{vnode}"), little-endian (reference vector of
    blake3(b"") = af1349b9f5f9a1a6...)."""
    assert position("") == int.from_bytes(bytes.fromhex("af1349b9f5f9a1a6"), "little")
    ring = HashRing(["http://w:1"])
    assert ring._positions[0] == min(position(f"http://w:1#{v}") for v in range(VIRTUAL_NODES_PER_WORKER))


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
