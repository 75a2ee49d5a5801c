"""Missing Java, Maven or PostgreSQL binaries give a clear message with the install command."""

from __future__ import annotations

import pytest

from stack import postgres
from stack.errors import StackError
from stack.manager import preflight
from stack.settings import StackSettings


@pytest.mark.parametrize(
    ("field", "hint"),
    [("java", "default-jdk-headless"), ("mvn", "apt-get install -y maven")],
)
def test_missing_binary_names_the_package(field: str, hint: str) -> None:
    settings = StackSettings(**{field: "/nonexistent/streamrag-no-such-binary"})
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
