"""The workers behind the gateway as the dispatcher sees them: one lane (a routing key) per healthy worker,
each lane with its own window (in-flight cap and KV budget) fed by its own scanner (lanes.py).

Each lane's key is minted for its worker on smg's consistent-hash ring (runtime/smg_ring.py; smg launched
with `--policy consistent_hashing`), so lane i IS worker i: no two lanes share a worker, and each lane's KV
budget is its own worker's. Membership comes from the gateway's /workers, polled about once a second. A worker
added: one more lane; other lanes keep their keys unless the newcomer's ring points now sit in front of them
(then that lane gets a fresh key for the same worker). A worker lost (dead, or hung: smg's health check times
out): its lane goes; `refresh()` returns it so the loop can requeue the lines in flight on it at once instead
of waiting out their deadlines on a worker that may never answer. The store lands each line once
(dispatch_queries.record_results), whichever worker answers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from blendserve.core import ids
from blendserve.core.dispatch.pending import Entry, PendingSet
from blendserve.core.runtime.base import RuntimeFailure
from blendserve.core.runtime.gateway import GatewayRuntime, WorkerState
from blendserve.core.runtime.smg_ring import HashRing
from blendserve.core.sched.scanner import LEFT, Side

log = logging.getLogger("blendserve.dispatch")
POLL_EVERY_S = 1.0
WAVE_FRACTION = 8


@dataclass
class FleetEvent:
    at: float
    kind: str  # "added" | "lost"
    urls: list[str]


@dataclass
class Fleet:
    runtime: GatewayRuntime
    pending: PendingSet
    lane_concurrency: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    generation: int = 0
    lanes: list[str] = field(default_factory=list)
    healthy: frozenset[str] = frozenset()
    workers: list[WorkerState] = field(default_factory=list)
    events: list[FleetEvent] = field(default_factory=list)
    key_of: dict[str, str] = field(default_factory=dict)  # worker url -> its lane's routing key
    _listed: frozenset[str] = frozenset()
    _ring: HashRing = field(default_factory=lambda: HashRing([]))
    _polled: float = 0.0

    async def refresh(self, force: bool = False) -> list[str]:
        """Re-read the gateway's workers (at most once a second) and re-lane on a change. Returns the lanes that
        went away with their worker (dead, or hung past smg's health check): their lines in flight should be
        requeued."""
        now = time.monotonic()
        if not force and now - self._polled < POLL_EVERY_S:
            return []
        self._polled = now
        try:
            self.workers = await self.runtime.workers()
        except RuntimeFailure as exc:
            log.warning("gateway worker list unavailable (%s); keeping %d lane(s)", exc, len(self.lanes))
            return []
        listed = frozenset(w.url for w in self.workers)
        healthy = frozenset(w.url for w in self.workers if w.healthy)
        if healthy == self.healthy and listed == self._listed:
            return []
        if listed != self._listed:  # smg's ring is over every registered worker, healthy or not
            self._ring = await asyncio.to_thread(HashRing, sorted(listed))  # ~70 ms a worker in pure Python
            self._listed = listed
        lost, added = sorted(self.healthy - healthy), sorted(healthy - self.healthy)
        keys = {url: key for url, key in self.key_of.items() if url in healthy and self._ring.owner(key) == url}
        for url in sorted(healthy - set(keys)):
            self.generation += 1
            keys[url] = self._ring.key_for(url, f"blendserve-{self.tag}-k{self.generation}")
        # Only a lost worker's lines are handed back: a lane re-keyed because a newcomer took its ring segment has
        # its lines running on its (live) worker already.
        gone = [key for url, key in self.key_of.items() if url not in healthy]
        self.key_of = keys
        self.lanes = [keys[url] for url in sorted(keys)]
        for kind, urls in (("lost", lost), ("added", added)):
            if urls:
                self.events.append(FleetEvent(ids.now_precise(), kind, urls))
                log.warning("gateway workers %s: %s; %d lane(s) now", kind, ", ".join(urls), len(self.lanes))
        self.healthy = healthy
        self.pending.set_lanes(self.lanes)
        return gone

    def kv_budget(self, lane: str) -> float:
        """The lane's KV budget: its own worker's capacity (the ring says which worker that is)."""
        url = next((u for u, key in self.key_of.items() if key == lane), None)
        cap = next((w.kv_capacity_tokens for w in self.workers if w.url == url and w.kv_capacity_tokens > 0), 0)
        return float(cap or self.runtime.info.kv_capacity_tokens)

    def in_flight(self, lane: str) -> int:
        return self.pending.lanes.count.get(lane, 0) if self.pending.lanes else 0

    def next_wave(self) -> list[tuple[Entry, Side]]:
        """For each lane with room (an eighth of its window free, or idle): the next lines of its scanner."""
        if not self.lanes or not len(self.pending):
            return []
        wave: list[tuple[Entry, Side]] = []
        for entry, lane in self.pending.samples_by_lane(cap=max(1, self.lane_concurrency // 2)):
            entry.lane = lane
            wave.append((entry, LEFT))
        for lane in self.lanes:
            busy = self.in_flight(lane) + sum(1 for e, _ in wave if e.lane == lane)
            room = self.lane_concurrency - busy
            if room <= 0 or (busy and room < max(1, self.lane_concurrency // WAVE_FRACTION)):
                continue
            wave.extend(self.pending.next_lane_wave(lane, room, self.kv_budget(lane)))
        return wave

    def describe(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "lanes": [
                {"routing_key": key, "worker": url, "in_flight": self.in_flight(key)}
                for url, key in self.key_of.items()
            ],
            "workers": [
                {"url": w.url, "healthy": w.healthy, "load": w.load, "kv_capacity_tokens": w.kv_capacity_tokens}
                for w in self.workers
            ],
            "events": [{"at": e.at, "kind": e.kind, "urls": e.urls} for e in self.events[-20:]],
        }
