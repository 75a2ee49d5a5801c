"""docker-compose.yml is parsed (no Docker engine here) and checked against the code and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from streamrag.config import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_every_component_is_a_service() -> None:
    assert {
        "kafka",
        "postgres",
        "connect",
        "qdrant",
        "tgi",
        "init",
        "pipeline",
        "consumers",
        "api",
        "prometheus",
        "grafana",
    } <= set(SERVICES)


def test_dependencies_and_named_volumes_exist() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in declared, f"{name} uses undeclared volume {src}"


def test_postgres_has_logical_wal_and_the_schema() -> None:
    pg = SERVICES["postgres"]
    assert "wal_level=logical" in pg["command"]
    assert any("producers/cdc/schema.sql" in v for v in pg["volumes"])


@pytest.mark.parametrize("service", ["init", "pipeline", "consumers", "api"])
def test_own_services_environment_maps_onto_the_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in SERVICES[service]["environment"].items()}
    for key in env:
        assert key.startswith("STREAMRAG_"), key
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("${POSTGRES_PASSWORD:-streamrag}", "streamrag"))
    settings = CommonSettings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.postgres.host == "postgres" and settings.postgres.port == 5432
    assert settings.postgres.password.get_secret_value() == "streamrag"


@pytest.mark.parametrize("service", ["init", "pipeline", "consumers", "training", "reindexer", "api"])
def test_own_services_run_real_commands(service: str) -> None:
    command = SERVICES[service]["command"]
    words = [w for w in command if not w.startswith("-")][:2]
    result = CliRunner().invoke(main, [*words, "--help"])
    assert result.exit_code == 0, f"`streamrag {' '.join(words)}` is not a command: {result.output}"
    options = [w.split("=")[0] for w in command if w.startswith("--")]
    for opt in options:
        assert opt in result.output, f"`streamrag {' '.join(words)}` has no option {opt}"


def test_published_ports_match_the_local_defaults() -> None:
    settings = CommonSettings()
    assert f"{settings.kafka.bootstrap_servers.rsplit(':', 1)[1]}:9092" in SERVICES["kafka"]["ports"]
    assert f"{settings.postgres.port}:5432" in SERVICES["postgres"]["ports"]
    assert "6333:6333" in SERVICES["qdrant"]["ports"]


def test_compose_runs_the_qdrant_version_the_tests_run() -> None:
    from pathlib import Path

    from stack.qdrant import VERSION

    compose = (Path(__file__).parents[2] / "docker-compose.yml").read_text()
    assert f"image: qdrant/qdrant:v{VERSION}" in compose
