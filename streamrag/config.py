"""Connection settings shared by the deployables: Kafka, Qdrant, PostgreSQL and the project paths.

Each deployable (pipeline, API, consumers, trainer) has its own settings model in its package and
composes these. Every field can be set from the environment with the ``STREAMRAG_`` prefix and
``__`` for nesting, e.g. ``STREAMRAG_KAFKA__BOOTSTRAP_SERVERS`` or the documented shortcuts
(``STREAMRAG_QDRANT_URL``). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamrag.contracts import Groups


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
    """The vector store: the embedded Qdrant Edge engine in ``path`` unless ``url`` names a Qdrant
    server (or any node of a cluster)."""

    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = None
    collection: str = Field(default="streamrag", description="The alias the API reads.")
    timeout_s: float = Field(default=30.0, gt=0, description="Seconds a server request may take.")
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="Copies of each shard on a cluster (3, with a write consistency of 2: an acknowledged write survives the loss of a node and writes go on).",
    )
    write_consistency_factor: int = Field(
        default=1, ge=1, description="Replicas that must apply a write before it is acknowledged."
    )
    shard_number: int | None = Field(default=None, ge=1, description="Shards per collection on a server.")
    prefer_grpc: bool = Field(
        default=False,
        description="Talk to the server over gRPC: 0.6-1.4 ms sooner a search at 1M points (bench/RESULTS.md).",
    )
    grpc_port: int | None = Field(
        default=None, description="The server's gRPC port; default: its HTTP port + 1."
    )
    acorn: bool = Field(
        default=True,
        description="Dense searches under the tenant filter walk two-hop neighbours (Qdrant's ACORN). "
        "Measured on Qdrant Edge, 1 tenant in 4: recall@10 0.56 -> 0.98 at 300k points for 0.7 -> 1.5 ms, "
        "0.24 -> 0.82 at 1M (bench/RESULTS.md); off only trades recall for speed.",
    )
    hnsw_ef: int | None = Field(
        default=None,
        ge=1,
        description="HNSW beam width of the API's dense searches (None: the engine's default, 100). Wider "
        "finds more of the true neighbours for more time: on one Edge shard of 1M points with ACORN, 512 "
        "raised tenant-filtered recall@10 from 0.79-0.86 to 0.988 at 3.4 ms (bench/RESULTS.md).",
    )
    index_min_points: int = Field(
        default=2_000,
        ge=1,
        description="Embedded: build the HNSW index of new points once this many wait and writes "
        "have paused (the build holds the process; until then new points are searched exactly).",
    )
    index_max_points: int = Field(
        default=50_000, ge=1, description="Embedded: build it once this many wait, paused or not."
    )

    def resolved_path(self) -> Path:
        return self.path or project_root() / ".data" / "qdrant"

    def store(self) -> Any:
        """A :class:`streamrag.store.VectorStore`: a server's when ``url`` is set, else the embedded
        store in ``path``, which one process owns (open it once and share it inside the process)."""
        if self.url:
            from streamrag.store.server import ServerStore

            return ServerStore(
                self.url,
                self.api_key.get_secret_value() if self.api_key else None,
                timeout_s=self.timeout_s,
                replication_factor=self.replication_factor,
                write_consistency_factor=self.write_consistency_factor,
                shard_number=self.shard_number,
                prefer_grpc=self.prefer_grpc,
                grpc_port=self.grpc_port,
            )
        from streamrag.store.edge import EdgeStore

        return EdgeStore(
            self.resolved_path(),
            index_min_points=self.index_min_points,
            index_max_points=self.index_max_points,
        )


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
    pipeline_group: str = Field(
        default=Groups.PIPELINE,
        validation_alias=AliasChoices(
            "STREAMRAG_PIPELINE_GROUP", "STREAMRAG_GROUP_ID", "pipeline_group", "group_id"
        ),
        description="The feature pipeline's consumer group: the pipeline commits as it; the API's "
        "read-your-writes, the lag monitor and training snapshots read its offsets. STREAMRAG_GROUP_ID "
        "is its older name.",
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
