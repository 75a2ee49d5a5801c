"""Settings of the local stack (``streamrag stack``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from streamrag.config import CommonSettings


class StackSettings(CommonSettings):
    """Where the local stack lives and listens. Everything binds to 127.0.0.1."""

    kafka_controller_port: int = 19093
    connect_url: str = "http://127.0.0.1:18083"
    connector_name: str = "streamrag-documents-cdc"
    java: str = "java"
    mvn: str = "mvn"
    kafka_heap: str = "-Xms256m -Xmx1g"
    connect_heap: str = "-Xms256m -Xmx1g"
    start_timeout_s: float = Field(default=120.0, description="How long a component may take to start.")

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka.bootstrap_servers.split(",")[0].rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def lib_dir(self) -> Path:
        return self.cache_dir / "lib"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"
