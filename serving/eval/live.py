"""``streamrag eval``: the real system on the labelled corpus, retrieval variants side by side.

The corpus (Debian FAQ questions -> sections, man page NAME lines -> pages) is indexed by the
real feature pipeline into a fresh embedded Qdrant; then every query runs through the API's own
:class:`~serving.retrieval.search.Retriever` as dense only, sparse only, hybrid (RRF) and
hybrid + rerank. With ``answers > 0`` a sample of questions is also answered by the generator to
measure answer support and context precision (judge-free, :mod:`serving.eval.metrics`).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from serving.eval.corpus import build_corpus
from serving.eval.runner import evaluate_retrieval, format_report
from serving.retrieval.rerank import ParentEmbeddingReranker
from serving.retrieval.search import QueryEncoder, Retriever
from streamrag.config import QdrantSettings
from streamrag.contracts import DocumentEvent, Op, utcnow

TENANT = "eval"


def to_event_id(doc_id: str) -> str:
    return doc_id.replace("/", ":")


def index_corpus(documents: Sequence[Any], qdrant: QdrantSettings, echo: Any = print) -> Any:
    """Publish the corpus to a fresh topic and index it with the real pipeline; returns the client."""
    from producers.publisher import Publisher
    from streams.runner import start_in_thread
    from streams.settings import PipelineSettings

    base = PipelineSettings(metrics_port=None, features_topic=None)
    conf = base.kafka.librdkafka()
    topic = f"eval.docs.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)  # keep a reference: the futures die with the client
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    events = [
        DocumentEvent(tenant=TENANT, doc_id=to_event_id(d.doc_id), version=1, op=Op.UPSERT, title=d.title,
                      body=d.body, metadata={"source": d.source}, source_ts=utcnow())
        for d in documents
    ]  # fmt: skip
    with Publisher(base.kafka, topic=topic) as pub:
        pub.publish_many(events)
    client = qdrant.store()
    settings = base.model_copy(update={"source_topics": [topic], "cdc_topics": [], "qdrant": qdrant,
                                       "pipeline_group": f"eval-{uuid.uuid4().hex[:8]}", "stop_when_idle_s": 5.0})  # fmt: skip
    started = time.perf_counter()
    running = start_in_thread(settings, store=client)
    while running.alive():
        time.sleep(0.5)
    if running.error is not None:
        raise RuntimeError("indexing failed") from running.error
    echo(f"indexed {len(events)} documents in {time.perf_counter() - started:.0f} s")
    admin.delete_topics([topic])
    return client


def withhold(corpus: Any, n: int) -> tuple[set[str], list[Any]]:
    """Pick ``n`` Debian FAQ questions whose only answer document no other question needs.

    Those documents are left out of the index, so the questions become unanswerable from it: the
    honest reply is "I don't know". Returns the withheld document ids and their questions.
    """
    needed: dict[str, int] = {}
    for q in corpus.queries:
        for d in q.relevant_doc_ids:
            needed[d] = needed.get(d, 0) + 1
    picked = [
        q for q in reversed(corpus.queries)
        if q.source == "debian-faq" and len(q.relevant_doc_ids) == 1 and needed[q.relevant_doc_ids[0]] == 1
    ][:n]  # fmt: skip
    return {q.relevant_doc_ids[0] for q in picked}, picked


def run_eval(
    max_docs: int = 400,
    ks: Sequence[int] = (1, 5, 10),
    answers: int = 0,
    unanswerable: int = 10,
    echo: Any = print,
    retrieval: bool = True,
) -> int:
    from serving.eval.schema import Corpus

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    corpus = build_corpus(max_docs=max_docs)
    withheld_docs, withheld = withhold(corpus, unanswerable) if answers > 0 else (set(), [])
    corpus = Corpus(
        [d for d in corpus.documents if d.doc_id not in withheld_docs],
        [q for q in corpus.queries if q not in withheld],
    )
    echo(
        f"corpus: {len(corpus.documents)} documents, {len(corpus.queries)} queries (Debian FAQ + man pages)"
        + (
            f"; {len(withheld)} questions made unanswerable by withholding their documents"
            if withheld
            else ""
        )
    )
    qdrant = QdrantSettings(path=Path(tempfile.mkdtemp(prefix="streamrag-eval-")) / "q", collection="eval")
    client = index_corpus(corpus.documents, qdrant, echo)
    encoder = QueryEncoder()
    retriever = Retriever(client, qdrant.collection, encoder, candidates=40,
                          reranker=ParentEmbeddingReranker(encoder.model))  # fmt: skip

    original = {to_event_id(d.doc_id): d.doc_id for d in corpus.documents}  # exact inverse of the id mapping

    def variant(weight: float, rerank: bool = False, fusion: str = "rrf") -> Any:
        def search(text: str, k: int) -> list[str]:
            hits = retriever.search(text, TENANT, k, hybrid_weight=weight, fusion=fusion, rerank=rerank).hits
            return [original.get(h.doc_id, h.doc_id) for h in hits]

        return search

    variants = {
        "dense": variant(1.0),
        "sparse": variant(0.0),
        "hybrid (rrf)": variant(0.5),
        "hybrid (weighted)": variant(0.5, fusion="weighted"),
        "hybrid + rerank": variant(0.5, rerank=True),
    }
    if retrieval:
        reports = {}
        for name, fn in variants.items():
            reports[name] = evaluate_retrieval(corpus, fn, ks)
            echo(f"  evaluated {name}")
        echo(format_report(reports))
    if answers > 0:
        from serving.eval.answer_run import answer_report

        echo(answer_report(corpus, retriever, answers, withheld, original, echo))
    return 0
