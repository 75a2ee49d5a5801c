"""Settings of the RAG API (``streamrag serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr

from serving.guardrails.policy import GuardrailSettings
from serving.retrieval.search import Fusion
from streamrag.config import CommonSettings
from streamrag.contracts import Topics


class ApiSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: dict[str, str] = Field(
        default_factory=lambda: {"dev-key": "default"},
        description="API key -> tenant. Every request's tenant comes from its key, never from the body. "
        'Set as JSON: STREAMRAG_API_KEYS=\'{"k1": "acme"}\'.',
    )
    # Retrieval
    embedding_model_path: Path | None = None
    embedding_model_version: str = "minilm-l6-v2"
    query_torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch intra-op threads for query embedding when the API runs without the pipeline in "
        "its process. 1 serves concurrent requests best: each request embeds on its own core instead of "
        "all of them fighting over every core (bench/query.py). None leaves torch's default (all cores).",
    )
    query_dtype: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="dtype of query embedding; auto = bf16 where the CPU computes it natively (as the "
        "pipeline embeds documents), else fp32.",
    )
    default_k: int = 5
    max_k: int = 50
    candidates: int = Field(default=40, description="Per-retriever candidates before fusion.")
    hybrid_weight: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Dense share in fusion (1 = dense only). 0.6 with question_hybrid_weight 0.9 was best or "
        "within 0.7 MRR points of the best on each corpus of the retrieval study (bench/RESULTS.md).",
    )
    question_hybrid_weight: float | None = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Dense share for a query that reads as a natural-language question (ends with '?' or "
        "opens with how/what/why/can/...); None: hybrid_weight for every query. A request's own "
        "hybrid_weight overrides both.",
    )
    identifier_hybrid_weight: float | None = Field(
        default=0.4,
        ge=0,
        le=1,
        description="Dense share for a query naming an identifier (a word mixing letters and digits such as "
        "ext4, a snake_case name, a command-line option), question or not: the sparse side matches those "
        "exactly. None: no special case.",
    )
    fusion: Fusion = Field(
        default="weighted",
        description="weighted (min-max), rrf or dbsf: the retrieval study in bench/RESULTS.md compares them.",
    )
    rerank: bool = Field(
        default=False, description="Rerank by default (kept off unless the eval shows it helps)."
    )
    reranker_path: Path | None = Field(
        default=None, description="A local cross-encoder folder, if you have one."
    )
    query_expansion: bool = Field(
        default=False, description="Rewrite queries with the generator (slow on CPU)."
    )
    self_query: bool = Field(default=False, description="Extract metadata filters with the generator.")
    self_query_fields: list[str] = Field(
        default_factory=list, description="Metadata fields self-query may filter."
    )
    min_score: float = Field(default=0.25, description="Below this dense cosine, a hit is not relevant.")
    # Generation
    tgi_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("STREAMRAG_TGI_URL", "tgi_url"),
        description="Text Generation Inference (or OpenAI-compatible) URL; unset = the embedded local model.",
    )
    tgi_token: SecretStr | None = None
    llm_port: int = Field(default=18090, description="Port of the embedded LLM server when tgi_url is unset.")
    max_new_tokens: int = Field(
        default=160, description="Answer length cap in generator tokens when a request does not say."
    )
    max_new_tokens_limit: int = Field(
        default=512, description="Cap on a request's max_new_tokens (cost control)."
    )
    context_token_budget: int = Field(
        default=500,
        description="Prompt budget in tokens (embedder tokenizer) for the question and the retrieved "
        "blocks; the fixed instructions and worked examples, cached by the server, are not counted. On "
        "2 CPU cores the default model's first token came after a median 10.5 s at 500, with the same "
        "gold citations as at 900 (bench/RESULTS.md).",
    )
    frequency_penalty: float = Field(
        default=0.3,
        ge=-2,
        le=2,
        description="OpenAI frequency penalty sent with every generation: discourages repeated tokens "
        "(small models otherwise loop).",
    )
    # Read-your-writes
    source_topics: list[str] = Field(
        default_factory=lambda: list(Topics.SOURCES),
        description="Topics the pipeline indexes (valid read-your-writes positions).",
    )
    freshness_timeout_s: float = Field(default=10.0, description="Longest a request waits for min_version.")
    # Guardrails, traces and feedback
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    tracing: bool = Field(
        default=True,
        description="A trace per request (spans, exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, "
        "and a record on traces_topic). Its cost on /v1/search p50 is in bench/RESULTS.md.",
    )
    traces_topic: str | None = Field(
        default=Topics.TRACES, description="Where trace records go; unset: none."
    )
    feedback_topic: str | None = Field(
        default=Topics.FEEDBACK, description="Where ratings go; unset: no feedback."
    )
    trace_lookback_s: float = Field(
        default=24 * 3600, gt=0, description="How far back a starting API reads traces and ratings."
    )
    trace_capacity: int = Field(default=10_000, ge=1, description="Traces kept readable per API process.")
    # Monitoring
    queries_topic: str | None = Topics.QUERIES
    run_pipeline: bool | None = Field(
        default=None,
        description="Run the feature pipeline in this process. Default: yes with embedded Qdrant "
        "(the embedded store is owned by one process), no with a Qdrant server.",
    )
