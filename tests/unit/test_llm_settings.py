"""LLM server settings: environment names and defaults (serving.llm.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.llm.settings import LLMServerSettings
from serving.llm.weights import DEFAULT_MODEL, MODELS


def test_defaults() -> None:
    settings = LLMServerSettings()

    assert (settings.host, settings.port) == ("127.0.0.1", 18090)
    assert settings.model == DEFAULT_MODEL
    assert settings.model_alias == MODELS[DEFAULT_MODEL].model_id
    assert settings.interrupt_requests is False  # queued requests are answered in full
    assert settings.models_dir == settings.cache_dir / "models"


def test_fields_are_read_from_streamrag_llm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRAG_LLM_PORT", "18555")
    monkeypatch.setenv("STREAMRAG_LLM_N_CTX", "2048")
    monkeypatch.setenv("STREAMRAG_PORT", "1")  # another deployable's port: not ours

    settings = LLMServerSettings()

    assert settings.port == 18555
    assert settings.n_ctx == 2048


def test_a_gguf_path_names_the_served_model(tmp_path: Path) -> None:
    assert LLMServerSettings(model_path=tmp_path / "tuned-v3.gguf").model_alias == "tuned-v3"


def test_shared_settings_keep_their_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path))
    assert str(LLMServerSettings().models_dir) == f"{tmp_path}/models"
