"""Settings of the local stack (``streamrag stack``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

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
    stack_qdrant: Literal["embedded", "server", "cluster"] = Field(
        default="embedded",
        validation_alias=AliasChoices("STREAMRAG_STACK_QDRANT", "stack_qdrant"),
        description="What `stack up` starts for Qdrant: nothing (embedded), one node or three.",
    )
    qdrant_base_port: int = Field(default=16333, description="HTTP port of the first local Qdrant node.")

    @property
    def qdrant_nodes(self) -> int:
        return {"embedded": 0, "server": 1, "cluster": 3}[self.stack_qdrant]

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
