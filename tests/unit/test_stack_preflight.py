"""Missing Java, Maven or PostgreSQL binaries give a clear message with the install command."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import postgres
from stack.errors import StackError
from stack.manager import preflight
from stack.maven import jars_dir
from stack.settings import StackSettings


@pytest.mark.parametrize(
    ("field", "hint"),
    [("java", "default-jdk-headless"), ("mvn", "apt-get install -y maven")],
)
def test_missing_binary_names_the_package(field: str, hint: str, tmp_path: Path) -> None:
    # An empty cache: the jars still have to be resolved, so Maven is needed.
    settings = StackSettings(**{field: "/nonexistent/streamrag-no-such-binary"}, cache_dir=tmp_path)
    with pytest.raises(StackError) as info:
        preflight(settings)
    assert hint in str(info.value)
    assert "not found" in str(info.value)


def test_missing_postgres_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda _name: None)
    with pytest.raises(StackError) as info:
        postgres.bin_dir()
    assert "apt-get install -y postgresql" in str(info.value)


def test_settings_derive_ports_and_dirs() -> None:
    settings = StackSettings(kafka={"bootstrap_servers": "127.0.0.1:29092"})
    assert settings.kafka_host_port == ("127.0.0.1", 29092)
    assert settings.lib_dir == settings.cache_dir / "lib"


def _cached_jars(cache: Path, *sets: str) -> None:
    for artifact_set in sets or ("kafka",):
        lib = jars_dir(StackSettings(cache_dir=cache), artifact_set)
        lib.mkdir(parents=True)
        (lib / ".complete").write_text("ok\n")


def test_maven_is_not_needed_once_the_jars_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cached_jars(tmp_path)
    no_mvn = StackSettings(mvn="/nonexistent/streamrag-no-such-binary", cache_dir=tmp_path)
    preflight(no_mvn, kafka_only=True)  # Kafka's jars are there: Java alone is enough
    with pytest.raises(StackError, match="maven"):
        preflight(no_mvn)  # the whole stack still needs Debezium's jars resolved


def test_kafka_only_does_not_need_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cached_jars(tmp_path, "kafka", "debezium")  # no Maven needed either way
    which = postgres.shutil.which
    monkeypatch.setattr(postgres.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None if name == "initdb" else which(name))
    preflight(StackSettings(cache_dir=tmp_path), kafka_only=True)
    with pytest.raises(StackError, match="postgresql"):
        preflight(StackSettings(cache_dir=tmp_path))
