"""Connection settings shared by the deployables: Kafka, Qdrant, PostgreSQL and the project paths.

Each deployable (pipeline, API, consumers, trainer) has its own settings model in its package and
composes these. Every field can be set from the environment with the ``STREAMRAG_`` prefix and
``__`` for nesting, e.g. ``STREAMRAG_KAFKA__BOOTSTRAP_SERVERS`` or the documented shortcuts
(``STREAMRAG_QDRANT_URL``). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout (or working directory) that holds the project's data and cache dirs."""
    env = os.environ.get("STREAMRAG_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


class KafkaSettings(BaseModel):
    """How to reach Kafka. :meth:`librdkafka` dumps the librdkafka keys confluent-kafka takes."""

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    partitions: int = Field(default=4, ge=1, description="Partitions of topics the project creates.")
    replication_factor: int = Field(default=1, ge=1)

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(extra)
        return conf


class QdrantSettings(BaseModel):
    """Embedded local mode at ``path`` unless ``url`` names a Qdrant server."""

    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = None
    collection: str = Field(default="streamrag", description="The alias the API reads.")

    def resolved_path(self) -> Path:
        return self.path or project_root() / ".data" / "qdrant"

    def client(self) -> Any:
        """A Qdrant client: a server's when ``url`` is set, else the embedded store at the path.

        Embedded mode (qdrant-client local mode) allows one process per folder and is not
        thread-safe, so within a process every caller shares one client per folder, whose calls
        are serialised by a lock. A Qdrant server has neither limit.
        """
        from qdrant_client import QdrantClient

        from streamrag.embedded_qdrant import EmbeddedClient

        if self.url:
            key = self.api_key.get_secret_value() if self.api_key else None
            return QdrantClient(url=self.url, api_key=key, timeout=30)
        path = str(self.resolved_path().resolve())
        with _LOCAL_CLIENTS_LOCK:
            client = _LOCAL_CLIENTS.get(path)
            if client is None:
                # Payload indexes matter on a server; local mode scans anyway and warns on each one.
                warnings.filterwarnings(
                    "ignore", message="Payload indexes have no effect in the local Qdrant"
                )
                Path(path).mkdir(parents=True, exist_ok=True)
                client = EmbeddedClient(QdrantClient(path=path, force_disable_check_same_thread=True))
                _LOCAL_CLIENTS[path] = client
            return client


_LOCAL_CLIENTS: dict[str, Any] = {}
_LOCAL_CLIENTS_LOCK = threading.Lock()


@atexit.register
def _close_local_clients() -> None:
    """Release embedded stores (and their folder locks) before the interpreter tears modules down."""
    for client in list(_LOCAL_CLIENTS.values()):
        with contextlib.suppress(Exception):
            client.close()
    _LOCAL_CLIENTS.clear()


class PostgresSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 15432
    database: str = "streamrag"
    user: str = "streamrag"
    password: SecretStr = SecretStr("streamrag")

    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} dbname={self.database} "
            f"user={self.user} password={self.password.get_secret_value()}"
        )


class CommonSettings(BaseSettings):
    """Settings every deployable reads. Subclass it per deployable."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMRAG_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    kafka: KafkaSettings = KafkaSettings()
    qdrant: QdrantSettings = QdrantSettings()
    postgres: PostgresSettings = PostgresSettings()
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("STREAMRAG_QDRANT_URL", "qdrant_url"),
        description="Shortcut for qdrant.url: switch from embedded Qdrant to a server.",
    )
    data_dir: Path = Field(default_factory=lambda: project_root() / ".data")
    cache_dir: Path = Field(default_factory=lambda: project_root() / ".cache")
    log_level: str = "INFO"

    def model_post_init(self, __context: Any) -> None:
        if self.qdrant_url and not self.qdrant.url:
            self.qdrant = self.qdrant.model_copy(update={"url": self.qdrant_url})
        if self.qdrant.path is None and not self.qdrant.url:
            self.qdrant = self.qdrant.model_copy(update={"path": self.data_dir / "qdrant"})


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Structured logs: JSON lines when ``STREAMRAG_LOG_FORMAT=json`` (or ``fmt="json"``), else text."""
    handler = logging.StreamHandler()
    if (fmt or os.environ.get("STREAMRAG_LOG_FORMAT", "text")) == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP clients log every request at INFO: with a Qdrant server that is a line per write
    # and per search. Their warnings and errors still show.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
