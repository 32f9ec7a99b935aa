"""Which copy rids each request was sent as (rid.0, rid.1, ... for n > 1), for abort().

SGLang aborts exact rids only (srt/managers/tokenizer_manager.py:2241-2253), so abort(rid) must name every
copy. The dispatcher may cancel the waiting task before it calls abort(): the copies of a cancelled request
are remembered (bounded), so abort works in either order. A rid never seen here (sent by an earlier process)
is aborted under its own name, which is also what an n == 1 request runs as; SGLang ignores unknown rids."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

KEEP_CANCELLED = 4096


class RidBook:
    def __init__(self) -> None:
        self.inflight: dict[str, list[str]] = {}
        self.cancelled: OrderedDict[str, list[str]] = OrderedDict()
        self.aborted: set[str] = set()

    def sent(self, rid: str, copies: list[str]) -> None:
        self.inflight[rid] = copies

    def finished(self, rid: str, cancelled: bool) -> None:
        copies = self.inflight.pop(rid, None)
        self.aborted.discard(rid)
        if cancelled and copies is not None:
            self.cancelled[rid] = copies
            while len(self.cancelled) > KEEP_CANCELLED:
                self.cancelled.popitem(last=False)

    @contextmanager
    def tracking(self, rid: str, copies: list[str]) -> Iterator[None]:
        """Around one generate() call: the copies are known while it runs, and remembered after it if the
        waiting task was cancelled (asyncio.CancelledError is no Exception), so a later abort() still names them."""
        self.sent(rid, copies)
        cancelled = True
        try:
            yield
            cancelled = False
        except Exception:
            cancelled = False
            raise
        finally:
            self.finished(rid, cancelled)

    def to_abort(self, rid: str) -> list[str]:
        """The copy rids to abort; marks a running request as aborted on request."""
        if rid in self.inflight:
            self.aborted.add(rid)
            return self.inflight[rid]
        return self.cancelled.pop(rid, None) or [rid]

    def was_aborted(self, rid: str) -> bool:
        return rid in self.aborted
