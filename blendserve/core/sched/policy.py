"""The admission policy: what runs next, for the live dispatcher and the simulator alike. Pure (stdlib only).

Every pending request sits in one global PrefixTree. A DualScanner walks the tree's blend order from both ends with
the rate blend (scanner.py): depth-first on each side, so shared prefixes stay hot in the runtime's radix cache, and
the per-step compute and memory rates of what is in flight keep the workload's density.
Output lengths are learned (estimates.py): a request's batch job first (its lines are alike; its running lines count
as lower bounds, so short lines finishing first do not bias it low), then its subtree, then max_tokens; re-estimated
online as lines finish (a job's pending lines when its sample count reaches a power of two and its mean moved by
more than 10%), and the order is laid out again when they were. A job seen for the first time is probed: its first
`probe` lines, all from one subtree (one prefix prefill), run ahead of the order, so its estimate is known long
before the cursors reach most of its lines (no up-front sample: SCHEDULER.md). A job that arrives later joins the
same tree and blend (the order is laid out again).
Critical path: a pending request whose own decode time (estimated length x one weight read per step, the least a
step can cost) reaches the pending work's time (max of its compute and memory time) starts now, whatever the blend
says: the schedule cannot end before it does, and a long generation started late is a tail of weight-bound steps.
Pacing (pacing.py; `pace`, for engines that run a step's operators in sequence): while a long generation runs, the
other lines spread over its decode steps; the critical path's own lines are never held back.
At scale, layouts and a job's re-estimation are done a slice per next_batch call (layout_job.py, reestimation.py):
no call lays out or re-estimates a million lines at once; below one slice they are done at once.

Contract (not thread-safe: the caller serialises calls; nothing here blocks, sleeps or does I/O):
  add(key, tokens, max_tokens, group=None, payload=None, known_output=None) -> TreeRequest
      A new pending request. `key` is the caller's id (hashable), `group` its batch job, `payload` rides along,
      `known_output` an output length known upfront (the simulator's oracle). Raises ValueError when `key` is
      already pending or in flight.
  remove(key) -> bool
      Drop a pending request (cancelled, expired). False when it is not pending (in flight: wait for done(),
      or unknown). Never raises.
  next_batch(kv_budget, limit) -> list[(TreeRequest, Side)]
      Up to `limit` requests to run now, in order; each leaves the pending set and is in flight until done()
      or requeue(). `kv_budget` is the runtime's KV capacity in tokens; the footprints of what is in flight
      count against it. [] when nothing is pending or there is no room; with nothing in flight at least one
      request comes back, however large.
  critical_path(limit, share=1.0, scanner=None, accept=None): what next_batch (or a lane) starts first.
  observe(key, output_tokens) -> bool
      The request finished with this many output tokens: its job and subtree learn, and its share of the
      blend becomes the truth. Call before done(). False (and nothing learned) for an unknown key.
  done(key) -> TreeRequest | None
      An in-flight request left the runtime for good (finished, failed, cancelled): its footprint is released.
      None for a key that is not in flight.
  requeue(key) -> bool
      An in-flight request goes back to pending (retryable failure, lease handover): it is inserted again and
      will be admitted again. False for a key that is not in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from blendserve.core.sched.arrivals import ArrivalLog
from blendserve.core.sched.longest import LongestFirst
from blendserve.core.sched.pacing import DecodePacer, Unpaced, ridge_lines
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.reestimation import ReestimateQueue
from blendserve.core.sched.sampling import probe_lines
from blendserve.core.sched.scanner import DEFAULT_BLEND, LEFT, RIGHT, DualScanner, Side

RELAYOUT_CHANGE = 0.1  # a job's estimate moving by more than this fraction lays the order out again
# Work per admission call on a layout or a job's re-estimation larger than that (amortised: each is some tens of
# ms of one core at 1M pending requests, bench tree); smaller trees and jobs are done at once, as without slices.
LAYOUT_SLICE = 6_000  # units of layout_job.LayoutJob
LAYOUT_AT_ONCE = 4096  # pending lines: a layout of a tree this small is ~10-30 ms, done at once
REESTIMATE_SLICE = 4_000  # pending lines
REFILE_SLICE = 5_000  # critical-path heap entries dropped (stale) or filed again (re-estimated) per call


class AdmissionPolicy:
    def __init__(
        self,
        perf: PerfModel,
        *,
        blend: str = DEFAULT_BLEND,
        probe: int = 4,
        split_budget: float = 0.01,
        tree: PrefixTree | None = None,
        layout_slice: int | None = LAYOUT_SLICE,
        reestimate_slice: int | None = REESTIMATE_SLICE,
        layout_at_once: int = LAYOUT_AT_ONCE,
        pace: bool = True,
    ):
        self.tree = tree if tree is not None else PrefixTree(perf)  # a caller may bring a subclass (compact tokens)
        self.scanner = DualScanner(
            self.tree, split_budget=split_budget, blend=blend, layout_slice=layout_slice, layout_at_once=layout_at_once
        )
        self.reestimates = ReestimateQueue(self.tree, reestimate_slice)
        # told of every insert: what a layout in progress or installed does not list yet (scanner.pending_order())
        self.arrival_logs: list[ArrivalLog] = [self.scanner.arrivals]
        self.probe = probe
        self.pending: dict[object, TreeRequest] = {}
        self.inflight: dict[object, tuple[TreeRequest, Side]] = {}
        self.inflight_kv = {LEFT: 0.0, RIGHT: 0.0}
        # job -> its pending requests, in arrival order: a dict, not a set, so a probe's anchor and the order of a
        # re-estimate do not depend on object addresses (a set of requests iterated differently run to run)
        self.jobs: dict[object, dict[TreeRequest, None]] = {}
        self.to_probe: list[object] = []
        self.laid_out_mean: dict[object, float] = {}  # job -> the estimate the current order was built with
        self.observed = 0
        self.rounds = 0  # next_batch calls: lines of one call start together (estimates.py's lower bounds)
        self.next_relayout = 16
        self.step_floor = perf.weight_read_time  # seconds: no decode step is faster than reading the weights
        self.longest = LongestFirst()  # pending lines by d_est, longest first (lazy: stale entries skipped)
        self.pacer = DecodePacer(ridge_lines(perf)) if pace else Unpaced()

    def __len__(self) -> int:
        return len(self.pending)

    # ---- requests in and out ------------------------------------------------------------------------

    def add(
        self,
        key: object,
        tokens: Sequence[int],
        max_tokens: int,
        group: object = None,
        payload: object = None,
        known_output: int | None = None,
    ) -> TreeRequest:
        if key in self.pending or key in self.inflight:
            raise ValueError(f"request {key!r} is already pending or in flight")
        req = TreeRequest(key, tokens, max_tokens, payload=payload, group=group, known=known_output)
        self._insert(req)
        return req

    def _insert(self, req: TreeRequest) -> None:
        self.tree.insert(req)
        for log in self.arrival_logs:
            log.note(req, self.tree.inserts - 1)
        self.pending[req.key] = req
        self.longest.push(req.d_est, req)
        if req.group is not None:
            members = self.jobs.get(req.group)
            if members is None:
                members = self.jobs[req.group] = {}
                if req.known is None and self.probe > 0 and self.tree.lengths.job_stats(req.group) is None:
                    self.to_probe.append(req.group)
            members[req] = None

    def remove(self, key: object) -> bool:
        req = self.pending.pop(key, None)
        if req is None:
            return False
        self._forget_pending(req)
        self.tree.remove(req)
        return True

    def _forget_pending(self, req: TreeRequest) -> None:
        self.pending.pop(req.key, None)
        members = self.jobs.get(req.group) if req.group is not None else None
        if members is not None:
            members.pop(req, None)

    # ---- admission ------------------------------------------------------------------------------------

    def next_batch(self, kv_budget: float, limit: int = 1 << 30) -> list[tuple[TreeRequest, Side]]:
        self.rounds += 1
        if self.reestimates.waiting:
            self.reestimates.advance()
            if not self.reestimates.waiting:  # every queued job's lines carry its new estimate: lay out again
                self.scanner.invalidate()
        picked: list[tuple[TreeRequest, Side]] = self.critical_path(limit)
        limit = min(limit, len(picked) + self._paced_room(picked))
        while self.to_probe and len(picked) < limit:
            picked += self._probe(self.to_probe.pop(0), limit - len(picked))
        if len(picked) < limit:
            picked += self.scanner.next_requests(
                kv_budget, self.inflight_kv[LEFT], self.inflight_kv[RIGHT], limit=limit - len(picked)
            )
        for req, side in picked:
            self.mark_taken(req, side, new_round=False)
        return picked

    def _paced_room(self, critical: list[tuple[TreeRequest, Side]]) -> int:
        longest = self.longest.top()  # after critical_path(): a pending line's, mostly
        root = self.tree.root
        per_line = root.tok / root.n if root.n else 0.0  # new prompt tokens a line brings, shared prefixes once
        return self.pacer.room(len(self.inflight), [r.d_est for r, _ in critical], root.d_sum, longest, per_line)

    def critical_path(
        self,
        limit: int,
        share: float = 1.0,
        scanner: DualScanner | None = None,
        accept: Callable[[TreeRequest], bool] | None = None,
    ) -> list[tuple[TreeRequest, Side]]:
        """Pending requests on the critical path (module docstring), longest first, taken by `scanner` (default:
        the policy's). Lanes (many workers): an engine has `share` of the work, and a line refused by `accept` (not
        this lane's) stops the walk: its lane takes it when it asks. Drops stale entries on the way."""
        root = self.tree.root
        remaining = share * max(self.tree.comp(root), root.mem)
        taken: list[tuple[TreeRequest, Side]] = []
        work = 0  # stale entries dropped and lines filed again: at most REFILE_SLICE per call (amortised)
        while self.longest and len(taken) < limit and work < REFILE_SLICE:
            filed, req = self.longest.peek()
            if req.node is None or self.pending.get(req.key) is not req:
                self.longest.pop()  # admitted or removed since (by the thousand, once the cursors
                work += 1  # have taken a long job's lines)
                continue
            if filed != req.d_est:  # re-estimated since it was pushed: file it under its current estimate
                if max(filed, req.d_est) * self.step_floor < remaining:
                    break  # not critical by either estimate, nor is any line filed below it: filing can wait
                self.longest.pop()
                self.longest.push(req.d_est, req)
                work += 1
                continue
            if req.d_est * self.step_floor < remaining or (accept is not None and not accept(req)):
                break
            self.longest.pop()
            (scanner if scanner is not None else self.scanner).take_out_of_order(req)
            self._forget_pending(req)
            taken.append((req, RIGHT))
        return taken

    def _probe(self, group: object, limit: int) -> list[tuple[TreeRequest, Side]]:
        """A new job's first lines, from one subtree so its prefix is prefilled once for all of them."""
        taken = probe_lines(self.tree, self.jobs.get(group, {}), group, min(limit, self.probe))
        for req in taken:
            self.scanner.take_out_of_order(req)
            self._forget_pending(req)
        return [(req, LEFT) for req in taken]

    def mark_taken(self, req: TreeRequest, side: Side, new_round: bool = True) -> None:
        """A pending request that another scanner over this tree took out of it (many workers: one scanner per
        worker) is in flight now, as if next_batch had returned it. Each such call is an admission round of its
        own (the estimator's lower bounds then only come from lines taken after it: conservative)."""
        self.rounds += new_round
        self._forget_pending(req)
        self.inflight[req.key] = (req, side)
        self.inflight_kv[side] += req.footprint
        self.tree.lengths.admitted(req.group, req.key, self.rounds)
        self.pacer.admitted(req.key, req.d_est)

    # ---- results ----------------------------------------------------------------------------------------

    def observe(self, key: object, output_tokens: int) -> bool:
        entry = self.inflight.get(key)
        if entry is None:
            return False
        req = entry[0]
        self.scanner.settle(key, output_tokens)
        self.pacer.finished(key, output_tokens)
        lengths = self.tree.lengths
        if lengths.observe_job(req.group, output_tokens, req.key):
            self._maybe_relayout(req.group)
        refresh = lengths.observe_subtree(self.tree, req.tokens, output_tokens)
        if req.group is None:  # subtree estimates serve job-less requests (a job's own estimate comes first)
            for node in refresh:
                self.tree.reestimate(node)
            self.observed += 1  # ... and are laid out again each time they double
            if self.observed >= self.next_relayout:
                self.next_relayout = self.observed * 2
                self.scanner.invalidate()
        return True

    def _maybe_relayout(self, group: object) -> None:
        """Re-estimate a job's pending lines and lay the order out again, only when its mean moved by more than
        RELAYOUT_CHANGE since the last time: once a job's estimate settles, learning costs nothing more."""
        stats = self.tree.lengths.job_stats(group)
        if stats is None:
            return
        before = self.laid_out_mean.get(group)
        if before is None or abs(stats.mean - before) > RELAYOUT_CHANGE * max(1.0, before):
            self.laid_out_mean[group] = stats.mean
            done = self.reestimates.push(group, self.jobs.get(group, ()))  # else a slice per call (reestimation.py)
            if done and not self.reestimates.waiting:  # else next_batch lays out once the queue is through
                self.scanner.invalidate()

    def done(self, key: object) -> TreeRequest | None:
        entry = self.inflight.pop(key, None)
        if entry is None:
            return None
        req, side = entry
        self.inflight_kv[side] -= req.footprint
        self.tree.lengths.dropped(req.group, key)
        self.pacer.left(key)
        self.scanner.done(req)
        return req

    def requeue(self, key: object) -> bool:
        req = self.done(key)
        if req is None:
            return False
        self._insert(req)
        return True

    # ---- checks -------------------------------------------------------------------------------------------

    def check_integrity(self) -> None:
        """The tree's own invariants, plus: pending == the tree's requests, disjoint from in flight, and the
        job index covers exactly the pending requests with a job. Raises AssertionError."""
        self.tree.check_integrity()
        in_tree = {r.key for r in self.tree.iter_subtree(self.tree.root)}
        assert in_tree == set(self.pending), "pending set and tree disagree"
        assert not in_tree & set(self.inflight), "a request is both pending and in flight"
        indexed = {r.key for members in self.jobs.values() for r in members}
        assert indexed == {k for k, r in self.pending.items() if r.group is not None}, "job index drift"
