#!/usr/bin/env bash
# The test command (README and .ci/run): installs what it needs, makes sure Postgres is up, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
.venv/bin/ruff check blendserve tests bench
.venv/bin/python -m pytest -q "$@"
