"""Compile the scheduler (blendserve/core/sched) with mypyc, in place, beside its sources.

    .venv/bin/python scripts/build_native.py          # build (scripts/install.sh runs this)
    .venv/bin/python scripts/build_native.py --clean  # remove the compiled modules: the sources run

The package uses the compiled modules only while they match the sources they were built from (a digest in
blendserve/core/sched/_native.stamp, blendserve/native.py): edit a module and the sources run until the
next build. Needs a C compiler and Python's headers; without them the build fails and the sources run (same code).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blendserve import native  # noqa: E402  (after the path: this script runs from a checkout)

GROUP = "blendserve.core.sched._native"  # one shared library for all modules, inside the package


def clean() -> None:
    (native.PACKAGE_DIR / native.STAMP).unlink(missing_ok=True)
    for path in native.PACKAGE_DIR.iterdir():
        if path.suffix in (".so", ".pyd"):
            path.unlink()


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    os.chdir(ROOT)
    digest = native.source_digest()  # of what is compiled, even if a source changes while it builds
    with tempfile.TemporaryDirectory() as tmp:
        setup(
            name="blendserve-sched-native",
            ext_modules=mypycify(
                [str(p.relative_to(ROOT)) for p in native.sources()], group_name=GROUP, opt_level="3", target_dir=tmp
            ),
            script_args=["-q", "build_ext", "--inplace", "--build-temp", tmp],
        )
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (native.PACKAGE_DIR / native.STAMP).write_text(digest + "\n")
    print(f"compiled {len(native.compiled_modules())} scheduler modules with mypyc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    if parser.parse_args().clean:
        clean()
    else:
        build()
