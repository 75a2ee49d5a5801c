"""Promoting a model in the registry causes the shadow re-index and the alias switch."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import Publisher
from serving.eval.corpus import build_corpus
from streamrag.config import QdrantSettings
from streams.embed import Embedder
from tests.utils.builders import corpus_events
from tests.utils.pipeline import pipeline_settings, start_harness
from tests.utils.registry import promote_copy_of_base
from training.aliases import AliasSwitcher
from training.promotion import PromotionWatcher
from training.registry import ModelRegistry
from training.settings import RegistryOptions, TrainingSettings

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_a_promotion_event_reindexes_and_switches(
    stack: Any, topic_factory: Any, group_factory: Any, tmp_path: Path
) -> None:
    docs, dlq, models = topic_factory("docs", 2), topic_factory("dlq", 1), topic_factory("models", 1)
    alias, tenant = "promo", f"t{uuid.uuid4().hex[:6]}"
    live = pipeline_settings([docs], group_factory("pipe"), tmp_path / "q", alias, dlq, None)
    documents = build_corpus(max_docs=80).documents[::8]
    harness = start_harness(live, Embedder())
    try:
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(corpus_events(documents, tenant))
        harness.wait(timeout_s=300)
    finally:
        harness.stop()
    client = QdrantSettings(path=tmp_path / "q", collection=alias).store()
    settings = TrainingSettings(
        qdrant=QdrantSettings(path=tmp_path / "q", collection=alias), data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache", source_topics=[docs], pipeline_group=live.group_id,
        registry=RegistryOptions(models_topic=models),
    )  # fmt: skip
    model = promote_copy_of_base(
        ModelRegistry(settings), tmp_path
    )  # publishes registered + promoted ModelEvents

    outcomes = PromotionWatcher(settings, client, base=live, group=group_factory("reindex")).run(
        max_events=2, timeout_s=400
    )
    assert [o.status for o in outcomes] == ["skipped", "reindexed"]  # "registered" is not a promotion
    assert (
        AliasSwitcher(client, alias).current()
        == f"{alias}__{model.pipeline_version}"
        == outcomes[1].collection
    )
