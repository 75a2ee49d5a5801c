"""The MLflow registry (real sqlite store and artifacts in a tmp dir) and the alias switcher (real
embedded Qdrant in a tmp dir). No Kafka: ModelEvents are disabled here (see the integration tests)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamrag.config import QdrantSettings
from streamrag.contracts import DriftEvent, utcnow
from streamrag.store import CollectionSpec
from training.aliases import AliasSwitcher
from training.registry import ModelRegistry, RegistryError
from training.settings import RegistryOptions, TrainingSettings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> TrainingSettings:
    root = tmp_path_factory.mktemp("registry")
    base = root / "base-model"
    base.mkdir()
    (base / "modules.json").write_text("[]")
    return TrainingSettings(
        data_dir=root / "data",
        cache_dir=root / "cache",
        registry=RegistryOptions(models_topic=None, base_model_path=base),
    )


@pytest.fixture(scope="module")
def registry(settings: TrainingSettings) -> ModelRegistry:
    return ModelRegistry(settings)


def fake_model(tmp_path: Path, marker: str) -> Path:
    folder = tmp_path / f"model-{marker}"
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([{"marker": marker}]))
    (folder / "weights.bin").write_bytes(marker.encode() * 100)
    return folder


def drift(event_id: str) -> DriftEvent:
    return DriftEvent(
        event_id=event_id,
        tenant="acme",
        kind="query_embedding",
        score=0.3,
        threshold=0.1,
        reference_window={"n": 10},
        current_window={"n": 10},
        detected_at=utcnow(),
    )


def test_a_run_registers_a_version_with_lineage_and_moves_the_model_to_the_cache(
    registry: ModelRegistry, settings: TrainingSettings, tmp_path: Path
) -> None:
    model = fake_model(tmp_path, "one")
    event = drift("evt-registry-1")
    snapshot = {"collection": "c__m", "point_count": 7, "docs_sha256": "abc", "offsets": {}}
    rec = registry.record_run(
        trigger=event,
        params={"max_pairs": 10},
        metrics={"candidate_mrr": 0.5},
        snapshot=snapshot,
        artifacts={"rows.jsonl": [{"a": 1}]},
        model_dir=model,
    )
    assert rec.version is not None
    cached = settings.model_dir(rec.version)
    assert not model.exists() and (cached / "weights.bin").read_bytes() == b"one" * 100
    assert cached.name == f"streamrag-embedder-{rec.version}"
    metrics, tags = registry.run_info(rec.run_id)
    assert metrics == {"candidate_mrr": 0.5}
    assert tags["drift.event_id"] == "evt-registry-1" and tags["snapshot.docs_sha256"] == "abc"
    assert registry.run_for_trigger("evt-registry-1") == rec.run_id
    assert registry.run_for_trigger("evt-never-seen") is None
    version = next(v for v in registry.list_versions() if v.version == rec.version)
    assert version.run_id == rec.run_id and version.metrics["candidate_mrr"] == 0.5
    assert version.model_uri == f"models:/streamrag-embedder/{rec.version}"
    # the cache is only a cache: a missing folder comes back from the artifact store
    shutil.rmtree(cached)
    assert (registry.model(rec.version).path / "weights.bin").read_bytes() == b"one" * 100


def test_a_failed_run_is_recorded_without_a_version(registry: ModelRegistry) -> None:
    before = len(registry.list_versions())
    rec = registry.record_run(
        trigger=drift("evt-fail"), params={}, metrics={}, snapshot=None, error="ValueError: x"
    )
    assert rec.version is None and len(registry.list_versions()) == before
    _, tags = registry.run_info(rec.run_id)
    assert tags["error"] == "ValueError: x"
    assert registry.client.get_run(rec.run_id).info.status == "FAILED"


def test_promote_and_rollback_walk_the_production_history(registry: ModelRegistry, tmp_path: Path) -> None:
    versions = [
        registry.record_run(
            trigger=None, params={}, metrics={}, snapshot=None, model_dir=fake_model(tmp_path, f"p{i}")
        ).version
        for i in range(3)
    ]
    a, b, c = (v for v in versions if v is not None)
    assert registry.current().version is None  # nothing promoted: the base model
    for v in (a, b, c):
        registry.promote(v)
    assert registry.current().version == c
    assert [v.version for v in registry.list_versions() if v.production] == [c]
    assert registry.rollback().version == b
    assert registry.rollback().version == a
    ref = registry.rollback()
    assert ref.version is None and ref.pipeline_version == "minilm-l6-v2"  # back to the base model
    with pytest.raises(RegistryError, match="roll back"):
        registry.rollback()
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("999")


# --- aliases -----------------------------------------------------------------------------------------


@pytest.fixture
def qdrant(tmp_path: Path) -> Iterator[Any]:
    client = QdrantSettings(path=tmp_path / "q").store()
    for name in ("c__old", "c__new"):
        client.ensure_collection(name, CollectionSpec(dense={"dense": 2}))
    client.point_alias("c", "c__old")
    yield client
    client.close()


def test_switch_and_rollback_repoint_the_alias_and_keep_a_history(qdrant: Any) -> None:
    switcher = AliasSwitcher(qdrant, "c")
    assert switcher.current() == "c__old"
    done = switcher.switch("c__new", "test")
    assert (done.source, done.target, switcher.current()) == ("c__old", "c__new", "c__new")
    undone = switcher.rollback()
    assert (undone.action, undone.undoes, switcher.current()) == ("rollback", done.seq, "c__old")
    with pytest.raises(LookupError, match="no switch"):
        switcher.rollback()
    assert [(s.seq, s.action) for s in switcher.history()] == [(1, "switch"), (2, "rollback")]
    assert list(qdrant.aliases()) == ["c"]  # never two, never none


def test_switching_to_a_missing_collection_leaves_the_alias_alone(qdrant: Any) -> None:
    switcher = AliasSwitcher(qdrant, "c")
    with pytest.raises(LookupError, match="does not exist"):
        switcher.switch("c__missing")
    assert switcher.current() == "c__old" and switcher.history() == []
