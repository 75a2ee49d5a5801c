"""Settings of the embedded LLM server (``streamrag llm serve``).

Every field is read from ``STREAMRAG_LLM_<FIELD>`` (e.g. ``STREAMRAG_LLM_PORT=18091``) rather than
``STREAMRAG_<FIELD>``, so that ``host``/``port`` never collide with the other deployables' settings;
the shared fields (``STREAMRAG_CACHE_DIR`` ...) keep their usual names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, model_validator

from streamrag.config import CommonSettings

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _llm_field(name: str, default: Any, description: str, **constraints: Any) -> Any:
    """A field settable as ``name=`` in code and as ``STREAMRAG_LLM_<NAME>`` in the environment."""
    return Field(
        default=default,
        description=description,
        validation_alias=AliasChoices(f"STREAMRAG_LLM_{name.upper()}", name),
        **constraints,
    )


class LLMServerSettings(CommonSettings):
    """Where the LLM server listens, which model it serves and how much work it accepts.

    Token counts are in tokens of the served model's tokenizer; times are in seconds.
    """

    host: str = _llm_field("host", "127.0.0.1", "Interface to bind.")
    port: int = _llm_field("port", 18090, "TCP port to bind.", ge=1, le=65535)
    model_id: str = _llm_field(
        "model_id",
        DEFAULT_MODEL_ID,
        "Name reported by /info and in chat completions (a label, never downloaded).",
    )
    model_path: Path | None = _llm_field(
        "model_path",
        None,
        "A plain transformers model folder to serve instead of the bundled SmolLM2 "
        "(e.g. a fine-tuned checkpoint). Unset: the bundled GGUF, converted once into cache_dir/models.",
    )
    max_concurrent: int = _llm_field(
        "max_concurrent", 4, "Generations running at once (slots); more requests wait.", ge=1
    )
    queue_timeout_s: float = _llm_field(
        "queue_timeout_s", 30.0, "How long a request waits for a free slot before it is answered 503.", ge=0
    )
    max_input_tokens: int = _llm_field(
        "max_input_tokens", 2048, "Longest prompt accepted (after `truncate`).", ge=1
    )
    max_new_tokens: int = _llm_field(
        "max_new_tokens", 512, "Most tokens one request may ask to generate.", ge=1
    )
    default_max_new_tokens: int = _llm_field(
        "default_max_new_tokens",
        100,
        "Tokens generated when a request does not say (TGI's default is 100).",
        ge=1,
    )
    max_stop_sequences: int = _llm_field(
        "max_stop_sequences", 4, "Most stop sequences one request may give.", ge=0
    )
    threads: int = _llm_field(
        "threads",
        min(2, os.cpu_count() or 1),
        "torch intra-op threads of each generation (each runs in its own worker thread). On 2 busy "
        "cores, 2 measured 1.2-1.7x faster than 1, for one request and for 3 at once.",
        ge=1,
    )
    warmup: bool = _llm_field(
        "warmup", True, "Run one short generation at startup so the first request is fast."
    )

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> LLMServerSettings:
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"default_max_new_tokens ({self.default_max_new_tokens}) exceeds "
                f"max_new_tokens ({self.max_new_tokens})"
            )
        return self

    @property
    def max_total_tokens(self) -> int:
        """Prompt plus generated tokens of one request, TGI's ``max_total_tokens``."""
        return self.max_input_tokens + self.max_new_tokens

    @property
    def models_dir(self) -> Path:
        """Where converted models are cached."""
        return self.cache_dir / "models"
