"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine); check what can be checked."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from integrator.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_compose_services_run_our_console_scripts_with_real_settings() -> None:
    services = COMPOSE["services"]
    assert {"rabbitmq", "gateway", "validator", "router"} <= set(services)
    for name in ("gateway", "validator", "router"):
        service = services[name]
        assert service["command"] == [f"integrator-{name}"]
        assert f"integrator-{name}" in SCRIPTS
        assert set(service["environment"]) <= set(ENV_NAMES.values())
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        for volume in service["volumes"]:
            assert (ROOT / volume.split(":")[0]).is_dir()
    assert "healthcheck" in services["rabbitmq"]
    for name, port in (("gateway", 8080), ("validator", 8081), ("router", 8082)):
        assert f"localhost:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid() -> None:
    subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], check=True)


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `") and "_" in line}
    assert set(ENV_NAMES.values()) <= table, sorted(set(ENV_NAMES.values()) - table)
