"""Event contracts shared by every streamrag pipeline: topic names, consumer groups and payloads.

This is the only module the pipelines share. Every event on a streamrag topic is one of the
pydantic models below, serialised as UTF-8 JSON. Anything that cannot be turned into one of them
raises :class:`EventValidationError`, whose message names the field and the reason.

Ordering contract (version fencing): a document's state is decided by the largest
:attr:`DocumentEvent.order_key`, ``(version, op_rank)``. A delete outranks an upsert of the same
version, so a delete is never undone by a replay of the upsert it removed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION: Final = 1


class Topics:
    """Topic names, defined once. Source topics are compacted and keyed by ``tenant/doc_id``."""

    DOCUMENTS: Final = "streamrag.documents"
    """:class:`DocumentEvent` published directly (``streamrag publish``)."""
    CDC_PREFIX: Final = "streamrag.cdc"
    """Debezium ``topic.prefix``; the documents table lands in :attr:`CDC_DOCUMENTS`."""
    CDC_DOCUMENTS: Final = "streamrag.cdc.public.documents"
    DEAD_LETTER: Final = "streamrag.dlq"
    """:class:`DeadLetter` records: what could not be processed, with its coordinates."""
    FEATURES: Final = "streamrag.features"
    """:class:`FeatureRecord` per written chunk, for drift detection."""
    QUERIES: Final = "streamrag.queries"
    """:class:`QueryRecord` per API request, for monitoring and drift detection."""
    DRIFT: Final = "streamrag.drift"
    """:class:`DriftEvent` that trigger training."""
    MODELS: Final = "streamrag.models"
    """:class:`ModelEvent` when a model version is registered, promoted or rolled back."""
    TRACES: Final = "streamrag.traces"
    """:class:`TraceRecord` per API request, keyed by request id (compacted)."""
    FEEDBACK: Final = "streamrag.feedback"
    """:class:`FeedbackEvent` per rated answer, keyed by request id (compacted: the last rating wins)."""

    SOURCES: Final = (DOCUMENTS, CDC_DOCUMENTS)
    COMPACTED: Final = (DOCUMENTS, CDC_DOCUMENTS)


class Groups:
    """Consumer group ids, defined once."""

    PIPELINE: Final = "streamrag-pipeline"
    DRIFT: Final = "streamrag-drift"
    TRAINING: Final = "streamrag-training"

    @staticmethod
    def reindex(model_version: str) -> str:
        """The group of a shadow re-index that replays the sources with another embedding model."""
        return f"streamrag-pipeline-reindex-{model_version}"


class EventValidationError(ValueError):
    """An input could not be turned into a contract event.

    ``field`` is the dotted path of the offending field (``"<root>"`` for the whole input) and
    ``reason`` says why; ``str(error)`` is ``"<field>: <reason>"``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def from_pydantic(cls, error: ValidationError, prefix: str = "") -> EventValidationError:
        first = error.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        return cls(f"{prefix}{loc}", first["msg"])


class Op(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


_TENANT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return value.astimezone(UTC)


class DocumentEvent(_Contract):
    """A change to one document: the unit every source is normalised to."""

    schema_version: Literal[1] = SCHEMA_VERSION
    tenant: str = Field(pattern=_TENANT_PATTERN, description="Tenant the document belongs to.")
    doc_id: str = Field(min_length=1, max_length=256, description="Document id, unique per tenant.")
    version: int = Field(ge=0, description="Monotonic per document; larger wins.")
    op: Op
    title: str = Field(default="", max_length=1_000)
    body: str = Field(default="", max_length=2_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    source_ts: datetime = Field(description="When the change happened at the source (UTC).")
    source: Literal["publish", "cdc"] = "publish"
    lsn: int | None = Field(default=None, ge=0, description="PostgreSQL LSN for CDC events.")

    @field_validator("doc_id")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if "/" in value or value.strip() != value:
            raise ValueError("doc_id must not contain '/' or surrounding whitespace")
        return value

    @field_validator("source_ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)

    @model_validator(mode="after")
    def _body_matches_op(self) -> DocumentEvent:
        if self.op is Op.UPSERT and not (self.body.strip() or self.title.strip()):
            raise ValueError("an upsert needs a non-empty title or body")
        return self

    @property
    def key(self) -> str:
        """The Kafka message key and identity of the document: ``tenant/doc_id``."""
        return document_key(self.tenant, self.doc_id)

    @property
    def order_key(self) -> tuple[int, int]:
        """``(version, op_rank)``: the fence compares these; a delete outranks an upsert."""
        return (self.version, 1 if self.op is Op.DELETE else 0)

    @classmethod
    def from_json(cls, data: bytes | str) -> DocumentEvent:
        """Parse a JSON document event; raises :class:`EventValidationError`."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(exc) from None


def document_key(tenant: str, doc_id: str) -> str:
    return f"{tenant}/{doc_id}"


class DeadLetter(_Contract):
    """An input that could not be processed, with everything needed to find and replay it."""

    reason: str
    error_type: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The original key, UTF-8 with replacement characters.")
    value_b64: str | None = Field(description="The original value bytes, base64.")
    pipeline: str
    failed_at: datetime


class FeatureRecord(_Contract):
    """One written chunk's embedding, for drift detection."""

    schema_version: Literal[1] = SCHEMA_VERSION
    tenant: str
    doc_id: str
    version: int
    chunk_index: int
    model_id: str
    embedding: list[float]
    source_ts: datetime
    indexed_ts: datetime
    source_topic: str
    source_partition: int
    source_offset: int


class QueryRecord(_Contract):
    """One API request, for monitoring and drift detection."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    tenant: str
    endpoint: Literal["search", "answer"]
    query: str
    filters: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None
    retrieved: list[dict[str, Any]] = Field(default_factory=list)
    top_score: float | None = None
    answer: str | None = None
    dont_know: bool = False
    model_id: str
    timings_ms: dict[str, float] = Field(default_factory=dict)
    ts: datetime


class DriftEvent(_Contract):
    """Drift detected on a stream; consumed by the training pipeline."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    tenant: str
    kind: Literal["document_embedding", "query_embedding", "retrieval_score", "dont_know_rate"]
    score: float
    threshold: float
    reference_window: dict[str, Any]
    current_window: dict[str, Any]
    feature_offsets: dict[str, int] = Field(
        default_factory=dict, description="'topic:partition' -> last offset covered."
    )
    detected_at: datetime


class ModelEvent(_Contract):
    """A model registry change, so other pipelines can react (for example a shadow re-index)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    action: Literal["registered", "promoted", "rolled_back"]
    name: str
    version: str
    model_uri: str
    ts: datetime


class GuardrailDecision(_Contract):
    """What one guardrail did to one request: which rule fired, on what, and the action taken."""

    stage: Literal["input", "context", "output"]
    rule: str = Field(description="The rule that fired, e.g. 'injection.ignore_instructions', 'pii.email'.")
    action: Literal["refuse", "drop", "redact", "flag", "replace"]
    target: str = Field(description="'question', 'answer', or the chunk as 'doc_id@version#chunk_index'.")
    detail: str = Field(default="", max_length=500, description="A short excerpt or reason.")


class TraceCandidate(_Contract):
    """A fused retrieval candidate with the scores each retriever gave it (null: not retrieved by it)."""

    doc_id: str
    version: int
    chunk_index: int | None = None
    score: float
    dense_score: float | None
    sparse_score: float | None


class TraceChunk(_Contract):
    """A chunk given to the generator, numbered as the answer cites it."""

    n: int
    doc_id: str
    version: int
    chunk_index: int
    title: str


class TraceRecord(_Contract):
    """Every step of one API request, from the question to the answer: what a bad answer is
    pinned to. Times are milliseconds; offsets are the pipeline group's committed offsets
    (``'topic:partition' -> offset``) as last sampled, with the time of the sample."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    tenant: str
    endpoint: Literal["search", "answer"]
    question: str
    filters: dict[str, Any] = Field(default_factory=dict)
    rewrites: dict[str, Any] = Field(default_factory=dict, description="expansion / self_query output.")
    candidates: list[TraceCandidate] = Field(default_factory=list, description="Fused, before reading.")
    results: list[TraceCandidate] = Field(default_factory=list, description="Returned (after rerank).")
    chunks_used: list[TraceChunk] = Field(default_factory=list)
    prompt: list[dict[str, str]] | None = Field(default=None, description="Chat messages as sent.")
    guardrails: list[GuardrailDecision] = Field(default_factory=list)
    answer: str | None = None
    dont_know: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="'embedding', 'generator' -> version.")
    collection: str | None = Field(default=None, description="The physical collection read.")
    index_offsets: dict[str, int] = Field(default_factory=dict)
    index_sampled_at: datetime | None = None
    error: str | None = None
    ts: datetime


class FeedbackEvent(_Contract):
    """A user's rating of one answer; the latest event per request id is the rating."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    tenant: str
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2_000)
    correction: str | None = Field(default=None, max_length=8_000)
    generator_model: str = Field(description="The generator that wrote the rated answer.")
    embedding_model: str
    ts: datetime


EVENT_MODELS: Final[dict[str, type[_Contract]]] = {
    "DocumentEvent": DocumentEvent,
    "DeadLetter": DeadLetter,
    "FeatureRecord": FeatureRecord,
    "QueryRecord": QueryRecord,
    "DriftEvent": DriftEvent,
    "ModelEvent": ModelEvent,
    "TraceRecord": TraceRecord,
    "FeedbackEvent": FeedbackEvent,
}


def json_schemas() -> dict[str, Any]:
    """The JSON Schema of every event, keyed by model name (what ``streamrag schema`` prints)."""
    return {name: model.model_json_schema() for name, model in EVENT_MODELS.items()}


# --- Debezium -------------------------------------------------------------------------------------


class Tombstone(_Contract):
    """A Debezium tombstone (null value): compaction marker after a delete; carries no change."""

    tenant: str
    doc_id: str


def _unwrap(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventValidationError(f"<{what}>", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EventValidationError(f"<{what}>", f"expected a JSON object, got {type(data).__name__}")
    # With JsonConverter schemas.enable=true the envelope sits under "payload" beside "schema".
    if set(data) == {"schema", "payload"}:
        data = data["payload"]
        if not isinstance(data, dict):
            raise EventValidationError("payload", "expected a JSON object")
    return data


def _row_identity(row: dict[str, Any], where: str) -> tuple[str, str]:
    for name in ("tenant", "id"):
        if row.get(name) is None:
            raise EventValidationError(f"{where}.{name}", "field required")
    return str(row["tenant"]), str(row["id"])


def parse_debezium(key: bytes | str | None, value: bytes | str | None) -> DocumentEvent | Tombstone:
    """Turn one Debezium change event for the ``documents`` table into a contract event.

    Accepts the JSON converter's output with or without the schema wrapper. ``op`` c, r (snapshot
    read) and u become upserts built from ``after``; d becomes a delete built from ``before``
    (the table has REPLICA IDENTITY FULL, so ``before`` carries the version). A null value is the
    tombstone Debezium writes after a delete and is returned as :class:`Tombstone`.
    """
    if value is None:
        if key is None:
            raise EventValidationError("<key>", "a tombstone needs a key")
        tenant, doc_id = _row_identity(_unwrap(key, "key"), "key")
        return Tombstone(tenant=tenant, doc_id=doc_id)

    env = _unwrap(value, "value")
    op = env.get("op")
    if op not in ("c", "r", "u", "d"):
        raise EventValidationError("op", f"expected one of c, r, u, d, got {op!r}")
    row = env.get("before") if op == "d" else env.get("after")
    side = "before" if op == "d" else "after"
    if not isinstance(row, dict):
        raise EventValidationError(side, f"op {op!r} needs a row object in {side!r}")
    source = env.get("source")
    if not isinstance(source, dict):
        raise EventValidationError("source", "field required")
    ts_ms = source.get("ts_ms", env.get("ts_ms"))
    if not isinstance(ts_ms, int):
        raise EventValidationError("source.ts_ms", "expected an integer (epoch milliseconds)")
    lsn = source.get("lsn")
    if lsn is not None and not isinstance(lsn, int):
        raise EventValidationError("source.lsn", "expected an integer")
    tenant, doc_id = _row_identity(row, side)
    if row.get("version") is None:
        raise EventValidationError(f"{side}.version", "field required")
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):  # io.debezium.data.Json arrives as JSON text
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise EventValidationError(f"{side}.metadata", f"not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise EventValidationError(f"{side}.metadata", "expected a JSON object")
    fields: dict[str, Any] = {
        "tenant": tenant,
        "doc_id": doc_id,
        "version": row["version"],
        "op": Op.DELETE if op == "d" else Op.UPSERT,
        "title": "" if op == "d" else (row.get("title") or ""),
        "body": "" if op == "d" else (row.get("body") or ""),
        "metadata": {} if op == "d" else metadata,
        "source_ts": datetime.fromtimestamp(ts_ms / 1000, tz=UTC),
        "source": "cdc",
        "lsn": lsn,
    }
    try:
        return DocumentEvent.model_validate(fields)
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc, prefix=f"{side}.") from None


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- The index: the contract between the feature pipeline (writer) and the API (reader) -----------


class IndexSchema:
    """How chunks are laid out in Qdrant. The pipeline writes it; the API and trainer read it.

    A collection per embedding model version holds chunk points with the named vectors below;
    beside it, ``<collection>.docs`` holds the per-document version registry (the fence). The
    API reads through the alias :attr:`streamrag.config.QdrantSettings.collection`.
    """

    DENSE: Final = "dense"
    SPARSE: Final = "sparse"
    REGISTRY_SUFFIX: Final = ".docs"
    # Payload fields of a chunk point.
    TENANT: Final = "tenant"
    DOC_ID: Final = "doc_id"
    DOC_KEY: Final = "doc_key"
    VERSION: Final = "version"
    CHUNK_INDEX: Final = "chunk_index"
    TEXT: Final = "text"
    PARENT_TEXT: Final = "parent_text"
    SOURCE_TS: Final = "source_ts"
    INDEXED_TS: Final = "indexed_ts"
    MODEL_ID: Final = "model_id"
    METADATA: Final = "metadata"
    TITLE: Final = "title"
    CHUNK_COUNT: Final = "chunk_count"
    # Payload fields of a registry point (one per document version and op: the fence).
    ORDER: Final = "order"
    OP: Final = "op"

    @staticmethod
    def collection_for(alias: str, model_version: str) -> str:
        """The physical collection of one embedding model version behind ``alias``."""
        return f"{alias}__{model_version}"


class ChunkPayload(BaseModel):
    """The payload of one chunk point: the index contract the pipeline writes
    (``streams.index_store``) and the API, the trainer and the re-index read. Field names are the
    payload keys (:class:`IndexSchema` names the ones filters and indexes use). Readers need the
    required fields; the writer always writes every field."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tenant: str
    doc_id: str
    version: int
    chunk_index: int
    text: str
    source_ts: str = Field(description="ISO 8601: when the change happened at the source.")
    indexed_ts: str = Field(description="ISO 8601: when the pipeline wrote the chunk.")
    doc_key: str | None = None
    chunk_count: int | None = None
    title: str = ""
    parent_index: int | None = None
    parent_text: str | None = Field(default=None, description="The section around the chunk (small-to-big).")
    model_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None

    @property
    def parent(self) -> str:
        return self.parent_text if self.parent_text is not None else self.text


def sparse_encode(token_ids: list[int], k1: float = 1.2) -> tuple[list[int], list[float]]:
    """The lexical vector of a text from its tokenizer ids: saturated term frequency per token id.

    ``tf * (k1 + 1) / (tf + k1)``; the collection applies IDF (Qdrant ``Modifier.IDF``), so
    together they score like BM25 without length normalisation. Both the pipeline (documents)
    and the API (queries) must use this function with the same tokenizer.
    """
    counts: dict[int, int] = {}
    for tid in token_ids:
        counts[tid] = counts.get(tid, 0) + 1
    indices = sorted(counts)
    return indices, [counts[i] * (k1 + 1) / (counts[i] + k1) for i in indices]
