"""Re-indexing with a promoted model while queries keep running: no error, no empty result, ever.

Real Kafka, the real feature pipeline (live: base MiniLM; shadow: the promoted version), embedded
Qdrant in a tmp dir shared in-process, a real MLflow registry. For speed the promoted version is a
copy of the base model's folder registered as a new version: same vectors, new model id and
collection, which is all the switch can tell apart.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import Publisher
from serving.eval.corpus import build_corpus
from streamrag.config import QdrantSettings
from streamrag.contracts import Groups
from streamrag.contracts import IndexSchema as S
from streamrag.store import Match, Nearest
from streams.embed import Embedder
from tests.utils.builders import corpus_events
from tests.utils.pipeline import pipeline_settings, start_harness
from tests.utils.registry import promote_copy_of_base
from training.aliases import AliasSwitcher
from training.registry import ModelRegistry
from training.reindex import index_status, reindex
from training.settings import RegistryOptions, TrainingSettings

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ALIAS = "kb"


@dataclass
class Prober:
    """Queries the alias in a loop (dense search, tenant filter) and records what it saw."""

    client: Any
    vector: list[float]
    tenant: str
    queries: int = 0
    errors: list[BaseException] = field(default_factory=list)
    empty: int = 0
    model_ids: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        where = [Match.eq(S.TENANT, self.tenant)]
        while not self.stop.is_set():
            try:
                collection = self.client.resolve(ALIAS) or ALIAS  # as the API does, every query
                (points,) = self.client.search(
                    collection, [Nearest(self.vector, S.DENSE, 5, where, [S.MODEL_ID])]
                )
            except Exception as exc:  # any failure is the test's finding
                self.errors.append(exc)
            else:
                self.empty += not points
                if points and (not self.model_ids or self.model_ids[-1] != points[0].payload[S.MODEL_ID]):
                    self.model_ids.append(points[0].payload[S.MODEL_ID])
            self.queries += 1
            time.sleep(0.005)


def test_shadow_reindex_switches_atomically_under_queries_and_rolls_back(
    stack: Any, topic_factory: Any, group_factory: Any, tmp_path: Path
) -> None:
    docs, dlq = topic_factory("docs", partitions=2), topic_factory("dlq", partitions=1)
    tenant, pipe_group = f"t{uuid.uuid4().hex[:6]}", group_factory("pipe")
    qdrant = QdrantSettings(path=tmp_path / "q", collection=ALIAS)
    live_settings = pipeline_settings([docs], pipe_group, tmp_path / "q", ALIAS, dlq, None)
    base_embedder = Embedder(threads=2)
    documents = build_corpus(max_docs=80).documents[::3]  # 27 documents, FAQ and man pages
    harness = start_harness(live_settings, base_embedder)
    try:
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(corpus_events(documents, tenant))
        harness.wait(timeout_s=400)
    finally:
        harness.stop()
    client = qdrant.store()
    old = f"{ALIAS}__minilm-l6-v2"
    assert AliasSwitcher(client, ALIAS).current() == old
    settings = TrainingSettings(
        qdrant=qdrant,
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        source_topics=[docs],
        pipeline_group=pipe_group,
        registry=RegistryOptions(models_topic=None),
    )
    model = promote_copy_of_base(ModelRegistry(settings), tmp_path)
    new = f"{ALIAS}__{model.pipeline_version}"

    prober = Prober(client, base_embedder.encode(["How do I install a Debian package?"])[0].tolist(), tenant)
    thread = threading.Thread(target=prober.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # queries are flowing before the build starts
        result = reindex(
            settings, client, model, base=live_settings, embedder=Embedder(model.path, threads=2)
        )
        time.sleep(0.5)  # and after the switch
    finally:
        prober.stop.set()
        thread.join(10)

    assert prober.errors == [] and prober.empty == 0
    assert prober.queries > 20
    assert prober.model_ids == [
        "sentence-transformers/all-MiniLM-L6-v2",
        f"models:/streamrag-embedder/{model.version}",
    ]
    assert result.switch is not None and (result.switch.source, result.switch.target) == (old, new)
    assert AliasSwitcher(client, ALIAS).current() == new
    # the new collection is complete, and every point carries the new model's id
    assert result.points == client.count(old) > len(documents)
    ids = {pl[S.MODEL_ID] for _, pl in client.scroll(new, fields=[S.MODEL_ID])}
    assert ids == {model.model_id}
    status = index_status(settings, client)
    by_name = {c.name: c for c in status.collections}
    assert status.live == new and by_name[new].live and not by_name[old].live
    assert (by_name[new].group, by_name[new].lag) == (Groups.reindex(model.pipeline_version), 0)
    assert (by_name[old].group, by_name[old].lag) == (pipe_group, 0)
    assert by_name[new].points == by_name[old].points

    back = AliasSwitcher(client, ALIAS).rollback("test")
    assert (back.source, back.target) == (new, old)
    assert index_status(settings, client).live == old
