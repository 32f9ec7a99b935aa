"""The pieces `serve --workers` coordinates with: the dispatch flock (one holder among processes) and the
served model's names published by the dispatching worker (tests/e2e/test_workers.py runs the real thing)."""

from __future__ import annotations

import os
import subprocess
import sys

from blendserve.api import workers
from blendserve.api.deps import SharedNames


def test_one_holder_of_the_dispatch_lock(tmp_path):
    lock = tmp_path / ".dispatch.lock"
    assert workers.hold_dispatch_lock(lock)
    try:
        other = "from blendserve.api.workers import hold_dispatch_lock as h; import sys; print(h(sys.argv[1]))"
        out = subprocess.run([sys.executable, "-c", other, str(lock)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"  # held here: another process does not get it
    finally:
        os.close(workers._held.pop())  # as when the holder exits
    out = subprocess.run([sys.executable, "-c", other, str(lock)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_shared_names_round_trip(tmp_path):
    writer, reader = SharedNames(tmp_path / "names"), SharedNames(tmp_path / "names")
    assert reader.read() == ()  # nothing published yet: any model name passes
    writer.write(["SmolLM2-135M-Instruct"])
    assert reader.read() == ("SmolLM2-135M-Instruct",)
    writer.write(["other"])
    os.utime(tmp_path / "names", ns=(0, 10**9))  # a distinct mtime even on a coarse clock
    assert reader.read() == ("other",)
    assert [p.name for p in tmp_path.iterdir()] == ["names"]  # written atomically, no temp file left
