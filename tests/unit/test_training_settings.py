"""Training settings from the environment, names derived from them, and catch-up arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.offsets import GroupProgress
from training.settings import TrainingSettings, pipeline_version


def test_environment_sets_shared_pipeline_names_and_nested_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMRAG_SOURCE_TOPICS", '["docs.a", "docs.b"]')
    monkeypatch.setenv("STREAMRAG_GROUP_ID", "pipe-x")  # the live pipeline's own variable
    monkeypatch.setenv("STREAMRAG_TRAINING__MAX_PAIRS", "33")
    monkeypatch.setenv("STREAMRAG_REGISTRY__MODEL_NAME", "emb")
    monkeypatch.setenv("STREAMRAG_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path / "c"))
    s = TrainingSettings()
    assert (s.source_topics, s.pipeline_group, s.training.max_pairs) == (["docs.a", "docs.b"], "pipe-x", 33)
    assert s.tracking_uri() == f"sqlite:///{tmp_path / 'd' / 'mlflow' / 'mlflow.db'}"
    assert s.artifacts_dir() == tmp_path / "d" / "mlflow" / "artifacts"
    assert s.model_dir("4") == tmp_path / "c" / "models" / "emb-4"


def test_pipeline_version_is_a_valid_collection_suffix() -> None:
    assert pipeline_version("streamrag-embedder", "12") == "streamrag-embedder-12"
    assert pipeline_version("My Model", "3") == "my-model-3"


def test_lag_counts_uncommitted_messages_from_the_log_start() -> None:
    progress = GroupProgress(
        committed={"t:0": 10, "t:1": -1, "t:2": -1},
        end={"t:0": 12, "t:1": 5, "t:2": 9},
        start={"t:0": 0, "t:1": 0, "t:2": 9},
    )
    assert progress.lag == 2 + 5 + 0 and not progress.caught_up
    done = GroupProgress(committed={"t:0": 12}, end={"t:0": 12}, start={"t:0": 3})
    assert done.lag == 0 and done.caught_up
