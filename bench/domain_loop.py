"""The training loop on a new domain, end to end on the real stack, with MRR@10 before and after.

1. The feature pipeline indexes corpus A (man pages) from a Kafka topic into embedded Qdrant,
   emitting its embeddings on a features topic that the real drift worker (Faust, a subprocess)
   watches.
2. Then corpus B, of another domain (the Debian Policy Manual), arrives on the same topic: the
   drift worker must emit a drift event.
3. The training consumer takes that event, builds (pseudo-query, passage) pairs from the store
   (never the evaluation questions), fine-tunes the embedder, evaluates it against the current one
   on held-out pairs and promotes it only if it is better; a promotion re-indexes the source topics
   with the new model beside the live collection and switches the alias.
4. B's questions (its section headings) and A's (man page NAME lines) are scored through the API's
   retriever before and after, the query model following the alias.

    python -m bench.domain_loop                      # stack up first: streamrag stack up
    python -m bench.domain_loop --docs-a 150 --timeout 1500
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from producers.publisher import Publisher
from serving.eval.corpus import build_corpus
from serving.eval.runner import evaluate_retrieval
from serving.eval.schema import Corpus
from serving.retrieval.search import QueryEncoder, Retriever, hybrid_weight_for
from streamrag.config import QdrantSettings
from streamrag.contracts import DriftEvent
from streams.embed import Embedder
from tests.utils.builders import corpus_events
from tests.utils.pipeline import pipeline_settings, start_harness
from training.aliases import AliasSwitcher
from training.promotion import PromotionWatcher
from training.settings import RegistryOptions, TrainingOptions, TrainingSettings
from training.trigger import DriftTrainingConsumer

REPO = Path(__file__).resolve().parents[1]
ALIAS, TENANT = "loop", "acme"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def create_topics(conf: dict[str, Any], names: dict[str, int]) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    topics = {key: f"bench.loop.{key}.{run}" for key in names}
    admin = AdminClient(conf)
    for future in admin.create_topics([NewTopic(topics[k], n, 1) for k, n in names.items()]).values():
        future.result(30)
    return topics


def start_drift_worker(conf: dict[str, Any], topics: dict[str, str], log_path: Path, data: Path) -> Any:
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1",
        "STREAMRAG_KAFKA__BOOTSTRAP_SERVERS": conf["bootstrap.servers"], "STREAMRAG_KAFKA__PARTITIONS": "2",
        "STREAMRAG_DATA_DIR": str(data), "STREAMRAG_DRIFT__APP_ID": f"bench-loop-drift-{uuid.uuid4().hex[:6]}",
        "STREAMRAG_DRIFT__FEATURES_TOPIC": topics["features"], "STREAMRAG_DRIFT__QUERIES_TOPIC": topics["queries"],
        "STREAMRAG_DRIFT__DRIFT_TOPIC": topics["drift"],
        # one observation per document: windows of 100 documents (A has 200, B 225)
        "STREAMRAG_DRIFT__REFERENCE_SIZE": "100", "STREAMRAG_DRIFT__WINDOW_SIZE": "100",
        "STREAMRAG_DRIFT__EVALUATE_EVERY": "10",
    }  # fmt: skip
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "consumers.drift", "run", "--loglevel", "info"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while "Worker ready" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"drift worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    return proc


def drift_events(conf: dict[str, Any], topic: str, timeout_s: float, more_than: int = 0) -> list[DriftEvent]:
    """The drift topic's events, waiting up to ``timeout_s`` for more than ``more_than`` of them."""
    consumer = Consumer(
        {**conf, "group.id": f"bench-loop-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    events: list[DriftEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                events.append(DriftEvent.model_validate_json(msg.value() or b""))
            elif len(events) > more_than:
                return events
        return events
    finally:
        consumer.close()


def mrr(corpus: Corpus, retriever: Retriever) -> dict[str, float]:
    """Ranking metrics of ``corpus``'s questions searched as the API searches by default."""
    from serving.settings import ApiSettings

    api = ApiSettings()
    original = {d.doc_id.replace("/", ":"): d.doc_id for d in corpus.documents}

    def search(text: str, k: int) -> list[str]:
        weight = hybrid_weight_for(
            text, api.hybrid_weight, api.question_hybrid_weight, api.identifier_hybrid_weight
        )
        hits = retriever.search(text, TENANT, k, hybrid_weight=weight, fusion=api.fusion).hits
        return [original.get(h.doc_id, h.doc_id) for h in hits]

    report = evaluate_retrieval(corpus, search, (1, 5, 10))
    return {m: report.metrics[m].mean for m in ("mrr@10", "recall@1", "recall@5")}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs-a", type=int, default=200, help="man pages indexed first")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole loop")
    parser.add_argument("--seed", type=int, default=0, help="seeds the order in which documents arrive")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    a = build_corpus(max_docs=args.docs_a, sources=["manpages"])
    b = build_corpus(sources=["debian-policy"])
    say(f"A: {len(a.documents)} man pages, {len(a.queries)} questions; "
        f"B: {len(b.documents)} Policy sections, {len(b.queries)} questions")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-loop-"))
    qdrant = QdrantSettings(path=tmp / "q", collection=ALIAS)
    live = pipeline_settings(["x"], "x", qdrant, ALIAS, "x", None)
    conf = live.kafka.librdkafka()
    topics = create_topics(conf, {"docs": 2, "dlq": 1, "features": 2, "queries": 2, "drift": 1, "models": 1})
    group = f"bench-loop-pipe-{uuid.uuid4().hex[:6]}"
    live = pipeline_settings([topics["docs"]], group, qdrant, ALIAS, topics["dlq"], topics["features"])
    worker = start_drift_worker(conf, topics, tmp / "drift.log", tmp / "data")
    harness = start_harness(live, Embedder())
    try:
        for name, corpus in (("A", a), ("B", b)):
            t = time.monotonic()
            # A stream in no particular order: the corpora are sorted by id, and a drift detector
            # rightly fires within a domain whose subjects arrive one after another.
            documents = random.Random(f"{name}:{args.seed}").sample(corpus.documents, len(corpus.documents))
            with Publisher(live.kafka, topic=topics["docs"]) as pub:
                pub.publish_many(corpus_events(documents, TENANT))
            harness.wait(timeout_s=args.timeout)
            say(f"indexed {name} in {time.monotonic() - t:.0f} s")
            if name == "A":
                early = drift_events(conf, topics["drift"], 10.0)
                say(f"drift events after A alone: {len(early)}")
        events = drift_events(conf, topics["drift"], 300.0, more_than=len(early))[len(early) :]
    finally:
        harness.stop()
        worker.terminate()
    if not events:
        say("no drift event after B: the loop stops here")
        print((tmp / "drift.log").read_text(errors="replace")[-3000:])
        return 1
    event = events[0]
    say(f"drift event {event.kind} score {event.score:.3f} > threshold {event.threshold:.3f}")
    client = qdrant.store()
    encoder = QueryEncoder()
    before = {"A": mrr(a, Retriever(client, ALIAS, encoder)), "B": mrr(b, Retriever(client, ALIAS, encoder))}
    say(f"before: {before}")
    settings = TrainingSettings(
        qdrant=qdrant, data_dir=tmp / "data", cache_dir=tmp / "cache", source_topics=[topics["docs"]],
        pipeline_group=group, registry=RegistryOptions(models_topic=topics["models"]),
        # auto_promote: the bench measures what a promotion does (the default only registers)
        training=TrainingOptions(drift_topic=topics["drift"], group_id=f"bench-loop-train-{uuid.uuid4().hex[:6]}",
                                 auto_promote=True),
    )  # fmt: skip
    t = time.monotonic()
    (outcome, *_) = DriftTrainingConsumer(settings, client).run(max_events=1, timeout_s=args.timeout)
    result = outcome.result
    if result is None:
        say(f"training did not produce a model: {outcome.status}")
        return 1
    say(f"trained {result.version} in {time.monotonic() - t:.0f} s: promoted={result.promoted}")
    say(
        f"  held-out pseudo-queries: current {result.current} -> candidate {result.candidate}; "
        f"{result.train_pairs} train / {result.heldout_pairs} held-out pairs"
    )
    after = before
    if result.promoted:
        t = time.monotonic()
        watcher = PromotionWatcher(
            settings, client, base=live, group=f"bench-loop-reindex-{uuid.uuid4().hex[:6]}"
        )
        outcomes = watcher.run(max_events=2, timeout_s=args.timeout)
        say(f"re-index: {[o.status for o in outcomes]} in {time.monotonic() - t:.0f} s; alias -> "
            f"{AliasSwitcher(client, ALIAS).current()}")  # fmt: skip
        retriever = Retriever(client, ALIAS, encoder)
        retriever.use_versioned_encoders(live.embedding_model_version, settings.models_dir())
        after = {"A": mrr(a, retriever), "B": mrr(b, retriever)}
    say(f"after: {after}")
    print(
        "\n| corpus | questions | MRR@10 before | MRR@10 after | R@1 before | R@1 after | R@5 before | R@5 after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, corpus in (("A: man pages", a), ("B: Debian Policy (new domain)", b)):
        k = name[0]
        x, y = before[k], after[k]
        print(f"| {name} | {len(corpus.queries)} | {x['mrr@10']:.3f} | {y['mrr@10']:.3f} | {x['recall@1']:.3f} | "
              f"{y['recall@1']:.3f} | {x['recall@5']:.3f} | {y['recall@5']:.3f} |")  # fmt: skip
    say(f"whole loop {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
