"""The compiled scheduler is used only while it matches its sources (blendserve/native.py), and bench tree says
which build it ran."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from blendserve import native
from blendserve.core.sim.tree_bench import run_tree_bench


def _package(tmp_path: Path, name: str) -> Path:
    """A package with one module, and an 'extension' beside it that cannot load: importing it proves which won."""
    package_dir = tmp_path / name
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    (package_dir / "mod.py").write_text("BUILD = 'source'\n")
    (package_dir / f"mod{EXTENSION_SUFFIXES[0]}").write_bytes(b"not a shared object")
    return package_dir


@pytest.fixture
def importable(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    finders = list(sys.meta_path)
    yield tmp_path
    sys.meta_path[:] = finders
    for name in [m for m in sys.modules if m.startswith("fakepkg")]:
        del sys.modules[name]


def test_a_stale_build_gives_way_to_the_sources(importable):
    package_dir = _package(importable, "fakepkg_stale")
    (package_dir / native.STAMP).write_text("digest of other sources\n")
    assert native.compiled_modules(package_dir) == ["mod"]
    assert native.activate("fakepkg_stale", package_dir) is False
    assert importlib.import_module("fakepkg_stale.mod").BUILD == "source"
    assert native.activate("fakepkg_stale", package_dir) is False
    assert sum(isinstance(f, native.SourceFirst) and f.package == "fakepkg_stale" for f in sys.meta_path) == 1


def test_a_build_without_a_stamp_gives_way_too(importable):
    package_dir = _package(importable, "fakepkg_nostamp")
    assert native.activate("fakepkg_nostamp", package_dir) is False
    assert importlib.import_module("fakepkg_nostamp.mod").BUILD == "source"


def test_a_current_build_is_used(importable):
    package_dir = _package(importable, "fakepkg_current")
    (package_dir / native.STAMP).write_text(native.source_digest(package_dir) + "\n")
    assert native.activate("fakepkg_current", package_dir) is True
    with pytest.raises(ImportError):  # the 'extension' is what Python imports now (and it is not one)
        importlib.import_module("fakepkg_current.mod")
    (package_dir / "mod.py").write_text("BUILD = 'edited'\n")
    assert native.activate("fakepkg_current", package_dir) is False  # an edit makes it stale
    assert importlib.import_module("fakepkg_current.mod").BUILD == "edited"


def test_no_extension_means_the_sources_and_no_finder(importable):
    package_dir = _package(importable, "fakepkg_plain")
    assert "stale" in native.describe(False, package_dir)
    (package_dir / f"mod{EXTENSION_SUFFIXES[0]}").unlink()
    finders = len(sys.meta_path)
    assert native.activate("fakepkg_plain", package_dir) is False
    assert len(sys.meta_path) == finders
    assert native.describe(False, package_dir).startswith("Python source (scripts/build_native.py compiles it")
    assert native.describe(True, package_dir) == "compiled (mypyc)"


def test_this_process_runs_the_build_it_reports():
    from blendserve.core.sched import policy

    compiled = policy.__file__ is not None and not policy.__file__.endswith(".py")
    assert native.COMPILED is compiled


def test_bench_tree_names_the_build_and_meets_its_own_accounting(capsys):
    args = argparse.Namespace(requests=3000, trace_number=1, gpu="h100", model="llama-3.1-8b", seed=0, admit=0)
    assert run_tree_bench(args) == 0
    out = capsys.readouterr().out
    build = "compiled (mypyc)" if native.COMPILED else "Python source"
    assert f"scheduler build          : {build}" in out
    assert "over 3000 admitted" in out
    assert ("without upkeep" in out) is not native.COMPILED  # the breakdown: the source build's alone
