"""Which build of the scheduler this process runs: its Python sources, or the same modules compiled by mypyc.

`scripts/build_native.py` (run by `scripts/install.sh` where a C compiler is) compiles blendserve/core/sched in
place: an extension module beside each source, ~1.6x faster per admission at 1M lines (bench tree). Python would import
an extension before its source, edited or not; so a compiled build is used only while it matches the sources it
was built from (their digest in the package's STAMP file). After any edit the sources run again, until the next
build: no one tests or runs code other than the code they read. blendserve/__init__.py imports this module before
anything imports the scheduler; COMPILED says which build this process runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path

PACKAGE = "blendserve.core.sched"
PACKAGE_DIR = Path(__file__).parent / "core" / "sched"
STAMP = "_native.stamp"  # in the package: written by scripts/build_native.py, the digest of the sources it compiled


def sources(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The modules that are compiled: every module of the package but its __init__."""
    return [p for p in sorted(package_dir.glob("*.py")) if p.name != "__init__.py"]


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the compiled modules' names and bytes."""
    digest = hashlib.sha256()
    for path in sources(package_dir):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compiled_modules(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of the modules that have an extension module beside their source (current or stale)."""
    return [p.stem for p in sources(package_dir) if any(p.with_name(p.stem + s).exists() for s in EXTENSION_SUFFIXES)]


class SourceFirst:
    """A meta path finder that loads a package's modules from their .py files, extension beside them or not."""

    def __init__(self, package: str, package_dir: Path) -> None:
        self.package, self.package_dir = package, package_dir

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        package, _, module = name.rpartition(".")
        source = self.package_dir / f"{module}.py"
        if package != self.package or not source.exists():
            return None
        return importlib.util.spec_from_file_location(name, source)


def activate(package: str = PACKAGE, package_dir: Path = PACKAGE_DIR) -> bool:
    """True when the package's compiled modules are current and will be imported. When there are stale ones, the
    sources are made to win (a SourceFirst finder ahead of the others) and False comes back. Call before any
    module of the package is imported: a module imported already stays as it is."""
    if not compiled_modules(package_dir):
        return False
    try:
        if (package_dir / STAMP).read_text().strip() == source_digest(package_dir):
            return True
    except OSError:
        pass  # no stamp: a build that did not finish
    if not any(isinstance(f, SourceFirst) and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFirst(package, package_dir))
    return False


def describe(compiled: bool, package_dir: Path = PACKAGE_DIR) -> str:
    """Which build runs, for the server's start-up log."""
    if compiled:
        return "compiled (mypyc)"
    if compiled_modules(package_dir):
        return "Python source: its compiled build is stale (scripts/build_native.py builds it again)"
    return "Python source (scripts/build_native.py compiles it, where a C compiler is)"


COMPILED = activate()  # which build of blendserve.core.sched this process runs
