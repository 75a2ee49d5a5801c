"""Typed request and response bodies of the RAG API (they are the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from serving.retrieval.search import Fusion
from streamrag.contracts import GuardrailDecision

# Exact-match filter values: what Qdrant's keyword/integer/bool match takes (no floats: use ranges).
# Qdrant's integers are signed 64-bit; a larger one is a 422 naming the field, not an engine error.
_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_META_VALUE = bool | _INT64 | str | list[str] | list[_INT64]
# Metadata field names: plain identifiers (they become Qdrant payload paths "metadata.<name>").
_META_KEY = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class Position(BaseModel):
    """Where ``streamrag publish`` said an event landed: wait until the pipeline has committed past it."""

    model_config = ConfigDict(extra="forbid")
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$", description="A Kafka topic name.")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class Freshness(BaseModel):
    """Read-your-writes: answer only once the index has caught up (bounded by ``timeout_s``)."""

    model_config = ConfigDict(extra="forbid")
    doc_id: str | None = Field(default=None, min_length=1, max_length=256)
    min_version: int | None = Field(default=None, ge=0, description="With doc_id: wait for this version.")
    deleted: bool = Field(
        default=False,
        description="With doc_id: wait until the document is deleted at min_version or later (a delete keeps "
        "the version of the row it removed, so the version alone cannot tell).",
    )
    after: Position | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=60)

    @model_validator(mode="after")
    def _pairs(self) -> Freshness:
        if (self.doc_id is None) != (self.min_version is None):
            raise ValueError("doc_id and min_version go together")
        if self.deleted and self.doc_id is None:
            raise ValueError("deleted needs doc_id and min_version")
        if self.doc_id is None and self.after is None:
            raise ValueError("give doc_id + min_version, or after (topic, partition, offset)")
        return self


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000, description="The question or keywords.")
    k: int = Field(default=5, ge=1, le=50)
    filters: dict[_META_KEY, _META_VALUE] = Field(
        default_factory=dict,
        max_length=16,
        description="Equality on metadata fields (name -> value or any of values).",
    )
    hybrid_weight: float | None = Field(default=None, ge=0, le=1, description="Dense share (1 = dense only).")
    fusion: Fusion | None = Field(
        default=None, description="weighted (min-max), rrf or dbsf; default: settings."
    )
    rerank: bool | None = None
    expand: bool | None = Field(
        default=None, description="Query expansion with the generator (default: settings)."
    )
    self_query: bool | None = Field(default=None, description="Metadata filters extracted from the query.")
    freshness: Freshness | None = None

    @model_validator(mode="after")
    def _not_blank(self) -> SearchRequest:
        if not self.query.strip():
            raise ValueError("query must not be blank")
        return self


class AnswerRequest(SearchRequest):
    stream: bool = Field(
        default=True, description="Server-Sent Events (tokens, then citations) or one JSON body."
    )
    max_new_tokens: int | None = Field(default=None, ge=1, le=1024)


class Chunk(BaseModel):
    doc_id: str
    version: int
    chunk_index: int
    text: str
    title: str
    score: float
    source_ts: str
    indexed_ts: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    request_id: str
    results: list[Chunk]
    timings_ms: dict[str, float]


class Citation(BaseModel):
    n: int = Field(description="The [n] marker used in the answer.")
    doc_id: str
    version: int
    chunk_index: int
    title: str


class AnswerResponse(BaseModel):
    request_id: str
    answer: str
    citations: list[Citation]
    dont_know: bool
    refused: bool = Field(default=False, description="The question was refused by the input guardrail.")
    guardrails: list[GuardrailDecision] = Field(default_factory=list, description="What each guardrail did.")
    timings_ms: dict[str, float]


class FeedbackRequest(BaseModel):
    """A rating of one answer (or search) the caller's tenant made; a second rating replaces the first."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The request_id of the rated answer.")
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2_000)
    correction: str | None = Field(
        default=None, max_length=8_000, description="What the answer should have said (training data)."
    )


class FeedbackAccepted(BaseModel):
    request_id: str
    rating: Literal["up", "down"]
    topic: str = Field(description="The topic the rating was written to (acknowledged before this reply).")


class FeedbackStats(BaseModel):
    """Current ratings (the latest per request) per tenant and generator model."""

    rows: list[dict[str, Any]]


class DocumentState(BaseModel):
    doc_id: str
    tenant: str
    indexed_version: int | None
    deleted: bool
    chunk_count: int
    indexed_at: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]
    detail: dict[str, str]


class ErrorBody(BaseModel):
    detail: str
