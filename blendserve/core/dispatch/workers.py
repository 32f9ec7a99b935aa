"""The workers behind the gateway as the dispatcher sees them: one lane (a routing key) per healthy worker,
each lane with its own window (in-flight cap and KV budget) fed by its own scanner (affinity.py).

Membership comes from the gateway's /workers, polled about once a second. A worker added: one more lane; the
other lanes keep their keys, so smg keeps them on their workers and their cached prefixes stay useful, and the
next plan moves subtrees to the new lane up to its fair share. A worker lost: smg moves the lost worker's key
to a healthy one, but does not say which key that was, so every lane gets a fresh key (a new generation) and
the subtrees are re-pinned; each prefix is recomputed once on its new worker. Lines in flight on the lost
worker come back as retryable errors (or smg retries them on another worker) and re-enter the tree through
the line runner's retry path; the store lands each line once (dispatch_queries.record_result)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from blendserve.core import ids
from blendserve.core.dispatch.pending import Entry, PendingSet
from blendserve.core.runtime.base import RuntimeFailure
from blendserve.core.runtime.gateway import GatewayRuntime, WorkerState
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
    _polled: float = 0.0

    async def refresh(self, force: bool = False) -> None:
        """Re-read the gateway's workers (at most once a second) and re-lane on a change."""
        now = time.monotonic()
        if not force and now - self._polled < POLL_EVERY_S:
            return
        self._polled = now
        try:
            self.workers = await self.runtime.workers()
        except RuntimeFailure as exc:
            log.warning("gateway worker list unavailable (%s); keeping %d lane(s)", exc, len(self.lanes))
            return
        healthy = frozenset(w.url for w in self.workers if w.healthy)
        if healthy == self.healthy:
            return
        lost, added = sorted(self.healthy - healthy), sorted(healthy - self.healthy)
        if lost or not self.lanes:
            self.generation += 1
            self.lanes = [self._key(i) for i in range(len(healthy))]
        else:
            self.lanes = self.lanes + [self._key(len(self.lanes) + i) for i in range(len(added))]
        for kind, urls in (("lost", lost), ("added", added)):
            if urls:
                self.events.append(FleetEvent(ids.now_precise(), kind, urls))
                log.warning("gateway workers %s: %s; %d lane(s) now", kind, ", ".join(urls), len(self.lanes))
        self.healthy = healthy
        self.pending.set_lanes(self.lanes)

    def _key(self, index: int) -> str:
        return f"blendserve-{self.tag}-g{self.generation}-{index}"

    def kv_budget(self) -> float:
        """Per-lane KV budget: the smallest healthy worker's (smg, not we, knows which worker a lane is on)."""
        caps = [w.kv_capacity_tokens for w in self.workers if w.healthy and w.kv_capacity_tokens > 0]
        return float(min(caps) if caps else self.runtime.info.kv_capacity_tokens)

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
        kv = self.kv_budget()
        for lane in self.lanes:
            busy = self.in_flight(lane) + sum(1 for e, _ in wave if e.lane == lane)
            room = self.lane_concurrency - busy
            if room <= 0 or (busy and room < max(1, self.lane_concurrency // WAVE_FRACTION)):
                continue
            wave.extend(self.pending.next_lane_wave(lane, room, kv))
        return wave

    def describe(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "lanes": [{"routing_key": lane, "in_flight": self.in_flight(lane)} for lane in self.lanes],
            "workers": [
                {"url": w.url, "healthy": w.healthy, "load": w.load, "kv_capacity_tokens": w.kv_capacity_tokens}
                for w in self.workers
            ],
            "events": [{"at": e.at, "kind": e.kind, "urls": e.urls} for e in self.events[-20:]],
        }
