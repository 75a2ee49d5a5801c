"""Settings of the embedded LLM server (``streamrag llm serve``: llama.cpp through llama-cpp-python).

Every field is read from ``STREAMRAG_LLM_<FIELD>`` (e.g. ``STREAMRAG_LLM_PORT=18091``) rather than
``STREAMRAG_<FIELD>``, so that ``host``/``port`` never collide with the other deployables' settings;
the shared fields (``STREAMRAG_CACHE_DIR`` ...) keep their usual names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field

from serving.llm.weights import DEFAULT_MODEL, MODELS
from streamrag.config import CommonSettings


def _llm_field(name: str, default: Any, description: str, **constraints: Any) -> Any:
    """A field settable as ``name=`` in code and as ``STREAMRAG_LLM_<NAME>`` in the environment."""
    return Field(
        default=default,
        description=description,
        validation_alias=AliasChoices(f"STREAMRAG_LLM_{name.upper()}", name),
        **constraints,
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LLMServerSettings(CommonSettings):
    """Which model llama.cpp serves, where, and with how much memory and CPU.

    Token counts are in tokens of the served model's tokenizer.
    """

    host: str = _llm_field("host", "127.0.0.1", "Interface to bind.")
    port: int = _llm_field("port", 18090, "TCP port to bind.", ge=1, le=65535)
    model: str = _llm_field(
        "model",
        DEFAULT_MODEL,
        f"Which packaged model to serve: one of {', '.join(sorted(MODELS))}.",
    )
    model_path: Path | None = _llm_field(
        "model_path",
        None,
        "A GGUF file to serve instead of the packaged model (e.g. a fine-tuned, converted checkpoint).",
    )
    n_ctx: int = _llm_field(
        "n_ctx",
        4096,
        "Context window in tokens (prompt + answer). The API's prompt budget must fit inside it.",
        ge=256,
    )
    threads: int = _llm_field(
        "threads", _cores(), "CPU threads for decoding and prompt processing (default: the cores).", ge=1
    )
    n_batch: int = _llm_field("n_batch", 512, "Prompt tokens processed per batch.", ge=1)
    logprobs: bool = _llm_field(
        "logprobs",
        False,
        "Allow requests for token logprobs. llama.cpp then computes the output layer for every "
        "prompt token, not only the last: on 2 cores that made the first token ~30% later "
        "(bench/RESULTS.md), so it is off unless a client needs logprobs.",
    )
    interrupt_requests: bool = _llm_field(
        "interrupt_requests",
        False,
        "Cut a running stream short when another request waits. Off: requests queue and each is "
        "answered in full (llama-cpp-python's server runs one generation at a time).",
    )

    @property
    def models_dir(self) -> Path:
        """Where the joined model files are cached."""
        return self.cache_dir / "models"

    @property
    def model_alias(self) -> str:
        """The name the server reports and chat completions carry."""
        if self.model_path is not None:
            return self.model_path.stem
        return MODELS[self.model].model_id if self.model in MODELS else self.model
