"""LLM server settings: environment names and limits (serving.llm.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.llm.settings import LLMServerSettings


def test_defaults() -> None:
    settings = LLMServerSettings()

    assert (settings.host, settings.port) == ("127.0.0.1", 18090)
    assert settings.max_concurrent == 4
    assert settings.max_total_tokens == settings.max_input_tokens + settings.max_new_tokens
    assert settings.models_dir == settings.cache_dir / "models"


def test_fields_are_read_from_streamrag_llm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRAG_LLM_PORT", "18555")
    monkeypatch.setenv("STREAMRAG_LLM_MAX_CONCURRENT", "2")
    monkeypatch.setenv("STREAMRAG_PORT", "1")  # another deployable's port: not ours

    settings = LLMServerSettings()

    assert settings.port == 18555
    assert settings.max_concurrent == 2


def test_shared_settings_keep_their_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path))
    assert str(LLMServerSettings().models_dir) == f"{tmp_path}/models"


def test_the_default_length_must_fit_the_limit() -> None:
    with pytest.raises(ValidationError, match="default_max_new_tokens"):
        LLMServerSettings(max_new_tokens=50, default_max_new_tokens=100)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        LLMServerSettings(max_concurrent=0)
