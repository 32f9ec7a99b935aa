"""The sweep over active batches: expire overdue ones, stop loading cancelled ones, finalize finished ones; and,
once a minute, delete expired files."""

from __future__ import annotations

from blendserve.core import files, finalize, ids
from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.line_runner import LineRunner
from blendserve.core.dispatch.pending import PendingSet
from blendserve.core.dispatch.stats import DispatchStats
from blendserve.store import dispatch_queries as ds
from blendserve.store.blobs import BlobStore
from blendserve.store.statuses import BatchStatus

FILE_SWEEP_EVERY_S = 60


class Housekeeper:
    def __init__(
        self, dbw: DbWorker, blobs: BlobStore, pending: PendingSet, runner: LineRunner, stats: DispatchStats
    ) -> None:
        self.dbw, self.blobs, self.pending, self.runner, self.stats = dbw, blobs, pending, runner, stats
        self._last_file_sweep = 0

    async def sweep(self) -> None:
        now = ids.now()
        if now - self._last_file_sweep >= FILE_SWEEP_EVERY_S:
            self._last_file_sweep = now
            await self.dbw.run(files.delete_expired, self.dbw.db, self.blobs)
        active = await self.dbw.run(ds.active_batches, self.dbw.db)
        running = {batch_id for batch_id, status, _ in active if status == BatchStatus.IN_PROGRESS}
        for batch_id, status, expires_at in active:
            if status == BatchStatus.IN_PROGRESS and expires_at is not None and expires_at <= now:
                running.discard(batch_id)
                if await self.dbw.run(finalize.expire, self.dbw.db, self.blobs, batch_id):
                    self.stats.finalized += 1
                continue
            idle = status != BatchStatus.IN_PROGRESS or self.pending.batch_idle(batch_id)
            if idle and await self.dbw.run(finalize.finalize_if_idle, self.dbw.db, self.blobs, batch_id) is not None:
                self.stats.finalized += 1
        self._abandon_ended(running)

    def _abandon_ended(self, running: set[str]) -> None:
        """Batches this dispatcher holds lines of that are no longer running (cancelled, expired, failed; here or by
        another replica): their waiting lines leave the tree and their lines in flight are aborted. Their rows
        are final already, so nothing of them can land."""
        for batch_id in self.pending.batch_ids() - running:
            for row_id in self.pending.forget_batch(batch_id):
                self.runner.abort(row_id)
