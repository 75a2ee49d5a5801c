"""The embedded generator: llama.cpp's OpenAI-compatible server (llama-cpp-python) on a packaged model.

streamrag does not implement an inference server: this module only configures llama-cpp-python's
own server (``llama_cpp.server``) from :class:`LLMServerSettings` and adds ``GET /health`` (200 once
the model is loaded), the readiness path TGI and vLLM also answer. Clients use
``huggingface_hub.InferenceClient`` chat completions, so TGI, vLLM and this server are
interchangeable by URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.llm.settings import LLMServerSettings
from serving.llm.weights import ensure_weights


def model_file(settings: LLMServerSettings, progress: Any = None) -> Path:
    """The GGUF file to serve: ``model_path`` when set, else the packaged model joined into the cache."""
    if settings.model_path is not None:
        return settings.model_path
    return ensure_weights(settings.model, settings.models_dir, progress)


def create_app(settings: LLMServerSettings, path: Path, verbose: bool = False) -> Any:
    """llama-cpp-python's FastAPI app serving ``path``; the model is loaded before this returns."""
    from llama_cpp.server.app import create_app as llama_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    server = ServerSettings(
        host=settings.host, port=settings.port, interrupt_requests=settings.interrupt_requests
    )
    model = ModelSettings(
        model=str(path),
        model_alias=settings.model_alias,
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.threads,
        n_threads_batch=settings.threads,
        # llama-cpp-python's server defaults to True (logits for every prompt token); the engine's
        # own default, and what generation needs, is the last token's only.
        logits_all=settings.logprobs,
        verbose=verbose,
    )
    app = llama_app(server_settings=server, model_settings=[model])

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "model": settings.model_alias}

    return app
