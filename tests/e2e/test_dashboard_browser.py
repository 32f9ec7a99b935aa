"""The dashboard in a real browser: headless Chromium (Debian's `chromium`; .ci/run installs it when missing)
loads /dashboard from a real server with two API keys and a slowed simulated runtime, runs the page's script,
and must show the key's own batches (live progress, predicted finish) and not the other key's. The screenshot
lands in the test's tmp_path and in test-artifacts/dashboard.png (ignored by git)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess
from tests.helpers import to_jsonl

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--virtual-time-budget=5000",  # let the page's first polls finish before the DOM/screenshot is taken
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get install chromium; .ci/run does)")
    return found


def _batch(client: httpx.Client, key: str, n: int, prompt: str, max_tokens: int) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "simulated",
                "messages": [{"role": "user", "content": prompt + str(i)}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(n)
    ]
    file = client.post(
        "/v1/files", files={"file": ("in.jsonl", to_jsonl(lines))}, data={"purpose": "batch"}, headers=auth
    ).json()
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    return client.post("/v1/batches", json=body, headers=auth).json()["id"]


def _run_chromium(binary: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_dashboard_in_headless_chromium(tmp_path):
    binary = _chromium()
    env = {
        "BLENDSERVE_API_KEYS": "key-a,key-b",
        "BLENDSERVE_SIMULATED_TIME_SCALE": "400",
        "BLENDSERVE_MAX_INFLIGHT": "4",
    }
    server = ServerProcess(tmp_path / "data", runtime="simulated", env=env)
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            mine = [
                _batch(client, "key-a", 40, "Summarise the attached report. " * 12, 40),
                _batch(client, "key-a", 12, "Write a long story about ", 200),
                _batch(client, "key-a", 24, "Classify: ", 5),
            ]
            theirs = _batch(client, "key-b", 5, "Other tenant ", 10)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until work is visibly under way
                got = client.get(f"/v1/batches/{mine[0]}", headers={"Authorization": "Bearer key-a"}).json()
                if got["request_counts"]["completed"] >= 4:
                    break
                time.sleep(0.2)
        url = f"{server.url}/dashboard#key=key-a"
        dom = _run_chromium(binary, tmp_path / "profile-dom", url, "--dump-dom")
        shot = tmp_path / "dashboard.png"
        taken = _run_chromium(binary, tmp_path / "profile-shot", url, f"--screenshot={shot}")
    finally:
        server.stop()
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-loaded="true"' in html, "the page's script never rendered the state"
    for batch_id in mine:
        assert batch_id in html
    assert theirs not in html, "another key's batch is visible"
    assert "in progress" in html and "(in " in html  # a live batch with a predicted finish ahead
    assert '<p id="error"></p>' in html, "the page shows an error"
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard.png")
