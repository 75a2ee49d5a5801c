"""Settings of the feature pipeline (``streamrag pipeline run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streamrag.config import CommonSettings
from streamrag.contracts import Topics


class PipelineSettings(CommonSettings):
    """One typed model for the pipeline deployable. Env: ``STREAMRAG_PIPELINE_<FIELD>`` is not used;
    every field is ``STREAMRAG_<FIELD>`` like the shared ones."""

    source_topics: list[str] = Field(default_factory=lambda: list(Topics.SOURCES))

    @property
    def group_id(self) -> str:
        """The consumer group the pipeline commits as (``pipeline_group``, declared once in the core)."""
        return self.pipeline_group

    cdc_topics: list[str] = Field(
        default_factory=lambda: [Topics.CDC_DOCUMENTS], description="Topics holding Debezium envelopes."
    )
    dead_letter_topic: str = Topics.DEAD_LETTER
    features_topic: str | None = Field(default=Topics.FEATURES, description="None disables feature records.")
    # Micro-batching: a batch closes at max_batch_messages, max_batch_bytes, or max_wait_s after its
    # first message. Under load batches fill before the wait ends; at low load the wait is most of
    # a small document's freshness (0.25 s gave p50 0.37 s, 0.1 s gives 0.26 s, with no loss of
    # throughput or p99: bench/RESULTS.md, seventh session).
    max_batch_messages: int = Field(default=64, ge=1)
    max_wait_s: float = Field(default=0.1, gt=0)
    store_retry_max_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest pause between retries while the vector store is unavailable (the "
        "pipeline waits for it, committing nothing past the unwritten batch).",
    )
    max_batch_bytes: int = Field(
        default=64 * 1024, ge=1, description="A batch closes at this many bytes of keys and values."
    )
    embed_batch_size: int = Field(default=32, ge=1)
    embed_slice_chunks: int = Field(
        default=64,
        ge=2,
        description="Most chunks a partition embeds before the other steps get a turn: bounds how long "
        "a large document holds up the small ones behind it (streams.schedule).",
    )
    # Chunking (tokens of the embedder's tokenizer, special tokens excluded).
    chunk_tokens: int = Field(
        default=254,
        ge=16,
        description="Tokens a chunk's embedded text may hold: its window, plus the title header with "
        "chunk_title=every (the window is title_tokens shorter then). At most the model's input less its "
        "2 special tokens (254 for MiniLM).",
    )
    chunk_overlap: int = Field(default=64, ge=0, description="Tokens consecutive windows share.")
    parent_tokens: int = Field(
        default=508,
        ge=16,
        description="Largest parent section: windows never straddle one, and a matched chunk contributes its "
        "parent to the answer's prompt when that fits the budget (small-to-big). 508 (two windows) beat 384 "
        "by 0.7-3.1 MRR points in the retrieval study (bench/RESULTS.md); such a parent exceeds the default "
        "context_token_budget (500), so answers quote the matched chunks.",
    )
    chunk_title: Literal["first", "every"] = Field(
        default="every",
        description="Where the document's title is embedded: 'first' = the title opens the first chunk; "
        "'every' = it is embedded as a header of every chunk (not stored in the chunk's text).",
    )
    title_tokens: int = Field(
        default=24, ge=1, description="With chunk_title=every: the title header's token budget (whole words)."
    )
    # The embedding model: the packaged MiniLM unless a path (for example a fine-tuned version) is set.
    embedding_model_path: Path | None = None
    embedding_model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_model_version: str = Field(default="minilm-l6-v2", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    embedding_dtype: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto = bf16 where the CPU/GPU computes it natively, else fp32."
    )
    embedding_device: str = Field(default="cpu", description="torch device of the embedder (cpu, cuda).")
    torch_threads: int | None = Field(
        default=None, description="CPU threads for the embedder, shared by its streams; None = cores."
    )
    embed_in_background: bool = Field(
        default=True,
        description="Run model calls on background threads (one per embed stream), so reading, cleaning, chunking and "
        "writing go on while the model runs (streams.schedule); false alternates them on one thread.",
    )
    embed_streams: int | None = Field(
        default=None,
        ge=1,
        description="Model batches run at once, each on torch_threads / embed_streams threads; None = 2 on "
        "a CPU with 2+ cores (measured faster than one call on 2 threads), 1 on a GPU.",
    )
    workers: int = Field(default=1, ge=1)
    metrics_port: int | None = Field(default=9100, description="Prometheus port; None disables it.")
    stop_when_idle_s: float | None = Field(
        default=None,
        description="Stop once every partition has been read to its end and idle this long (backfills).",
    )
