#!/usr/bin/env bash
# Fetches SGLang 0.5.23's generated /generate contract (sglang/api/v1/api_types.py, standalone: it imports only
# msgspec) from the real wheel with pip, for the SGLang stand-in in tests/fakes/sglang/. Nothing is vendored.
# Offline, it warns and exits 0: the tests that need the file skip with a message saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${BLENDSERVE_SGLANG_CONTRACT_DIR:-$HOME/.cache/blendserve/sglang-0.5.23}
[ -f "$DIR/api_types.py" ] && exit 0
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DIR/wheel"
if ! "$PY" -m pip download -q --no-deps sglang==0.5.23 -d "$DIR/wheel" 2>/dev/null; then
  echo "warning: could not download sglang==0.5.23 (offline?); SGLang contract tests will skip" >&2
  exit 0
fi
"$PY" - "$DIR" <<'PYEOF'
import sys, zipfile, glob, pathlib
target = pathlib.Path(sys.argv[1])
wheel = sorted(glob.glob(str(target / "wheel" / "sglang-0.5.23-*.whl")))[0]
with zipfile.ZipFile(wheel) as zf:
    (target / "api_types.py").write_bytes(zf.read("sglang/api/v1/api_types.py"))
PYEOF
rm -rf "$DIR/wheel"
echo "SGLang 0.5.23 contract in $DIR/api_types.py"
