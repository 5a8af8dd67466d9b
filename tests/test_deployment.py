"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine); check what can be checked.

tests/data/compose-spec.json is the Compose Specification's schema, `schema/compose-spec.json` of
github.com/compose-spec/compose-spec at 00655e2222608fa6eaecdf12ac5195889ca2244a (draft-07).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from integrator.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[1]


def _compose_cli_works(cli: list[str]) -> bool:
    if shutil.which(cli[0]) is None:
        return False
    return subprocess.run([*cli, "version"], capture_output=True, timeout=30).returncode == 0


COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_compose_services_run_our_console_scripts_with_real_settings() -> None:
    services = COMPOSE["services"]
    ours = ("gateway", "validator", "router", "ledger", "deliverer", "console")
    assert {"rabbitmq", "postgres", *ours} <= set(services)
    for name in ours:
        service = services[name]
        assert service["command"] == [f"integrator-{name}"]
        assert f"integrator-{name}" in SCRIPTS
        assert set(service["environment"]) <= set(ENV_NAMES.values())
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).is_dir() if source.startswith(".") else source in COMPOSE["volumes"]
    assert "healthcheck" in services["rabbitmq"] and "healthcheck" in services["postgres"]
    assert "ports" not in services["postgres"]
    ports = (("gateway", 8080), ("validator", 8081), ("router", 8082), ("console", 8083), ("ledger", 8084),
             ("deliverer", 8085))  # fmt: skip
    for name, port in ports:
        assert f"localhost:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(schema).iter_errors(COMPOSE)]
    assert errors == []
    broken = {**COMPOSE, "services": {"gateway": {**COMPOSE["services"]["gateway"], "ports": "8080"}}}
    assert not Draft7Validator(schema).is_valid(broken), "the schema does check"


COMPOSE_CLIS = [cli for cli in (["docker", "compose"], ["docker-compose"]) if _compose_cli_works(cli)]


@pytest.mark.skipif(not COMPOSE_CLIS, reason="neither `docker compose` nor `docker-compose` is installed")
def test_compose_file_is_valid_for_the_installed_compose() -> None:
    compose = [*COMPOSE_CLIS[0], "-f", str(ROOT / "docker-compose.yml")]
    subprocess.run([*compose, "config", "-q"], check=True, capture_output=True, timeout=60)


def test_the_containers_run_as_nobody_and_only_the_gateway_is_published() -> None:
    gateway = COMPOSE["services"]["gateway"]
    assert "INTEGRATOR_DATABASE_URL" in gateway["environment"], "store tokens are read from PostgreSQL"
    assert "USER nobody" in (ROOT / "Dockerfile").read_text()
    assert gateway["ports"] == ["8080:8080"]
    assert COMPOSE["services"]["rabbitmq"]["ports"] == ["127.0.0.1:15672:15672"], "not 5672"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "config/stores.yml" in ignored, "no token hash is baked into the image"


def test_the_image_installs_pinned_versions_of_every_dependency() -> None:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in map(Requirement, project["dependencies"]):
        assert canonicalize_name(spec.name) in pins, spec.name
        assert spec.specifier.contains(pins[canonicalize_name(spec.name)]), (spec, pins[spec.name])
    assert "RUN pip install --no-cache-dir -r requirements.lock" in (ROOT / "Dockerfile").read_text()


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `") and "_" in line}
    assert set(ENV_NAMES.values()) <= table, sorted(set(ENV_NAMES.values()) - table)
