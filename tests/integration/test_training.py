"""Drift event -> training run -> registered model version, end to end on the real stack.

Real Kafka (uuid-named topics), the real feature pipeline indexing real documents (Debian FAQ
sections and man pages) with the real MiniLM into embedded Qdrant in a tmp dir, a real MLflow
registry (sqlite in the tmp dir) and a real fine-tuning run, kept small for a shared CPU.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.publisher import Publisher
from serving.eval.corpus import build_corpus
from streamrag.config import QdrantSettings
from streamrag.contracts import DriftEvent, ModelEvent, utcnow
from tests.utils.builders import corpus_events
from tests.utils.kafka import end_offsets, read_from
from tests.utils.pipeline import pipeline_settings, start_harness
from training.dataset import resolve_alias, scroll_chunks, take_snapshot
from training.registry import ModelRegistry
from training.run import TrainingFailed
from training.settings import RegistryOptions, TrainingOptions, TrainingSettings
from training.trigger import DriftTrainingConsumer

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ALIAS = "kb"


@pytest.fixture(scope="module")
def embedder() -> Any:
    from streams.embed import Embedder

    return Embedder(threads=2)


@pytest.mark.timeout(1200)  # indexing 80 documents and a fine-tuning run on a shared 2-core CPU
def test_a_drift_event_trains_and_registers_a_version_with_lineage(
    stack: Any,
    embedder: Any,
    topic_factory: Any,
    group_factory: Any,
    producer_factory: Any,
    tmp_path: Path,
    kafka_conf: dict,
) -> None:
    docs, dlq = topic_factory("docs", partitions=2), topic_factory("dlq", partitions=1)
    drift_topic, models_topic = topic_factory("drift", partitions=1), topic_factory("models", partitions=1)
    tenant, pipe_group = f"t{uuid.uuid4().hex[:6]}", group_factory("pipe")
    qdrant = QdrantSettings(path=tmp_path / "q", collection=ALIAS)
    harness = start_harness(pipeline_settings([docs], pipe_group, tmp_path / "q", ALIAS, dlq, None), embedder)
    try:
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(corpus_events(build_corpus(max_docs=80).documents, tenant))
        harness.wait(timeout_s=540)
    finally:
        harness.stop()
    client = qdrant.store()  # the same client object the pipeline wrote with
    settings = TrainingSettings(
        qdrant=qdrant,
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        source_topics=[docs],
        pipeline_group=pipe_group,
        registry=RegistryOptions(models_topic=models_topic),
        training=TrainingOptions(
            drift_topic=drift_topic,
            group_id=group_factory("train"),
            max_pairs=48,
            max_eval_pairs=40,
            torch_threads=2,
        ),
    )
    event = DriftEvent(
        event_id=f"drift-{uuid.uuid4().hex[:8]}",
        tenant=tenant,
        kind="document_embedding",
        score=0.4,
        threshold=0.05,
        reference_window={"size": 60},
        current_window={"size": 60},
        feature_offsets={"streamrag.features:0": 120},
        detected_at=utcnow(),
    )
    models_start = end_offsets(kafka_conf, models_topic)
    producer = producer_factory()
    producer.produce(drift_topic, key=b"junk", value=b"{not a drift event")
    producer.produce(drift_topic, key=tenant.encode(), value=event.to_bytes())
    assert producer.flush(10) == 0

    outcomes = DriftTrainingConsumer(settings, client).run(max_events=2, timeout_s=540)

    assert [o.status for o in outcomes] == ["invalid", "trained"]
    result = outcomes[1].result
    assert result is not None and result.trigger_event_id == event.event_id
    # offsets are committed only once the run is recorded, past both messages
    probe = Consumer({**kafka_conf, "group.id": settings.training.group_id})
    try:
        assert [tp.offset for tp in probe.committed([TopicPartition(drift_topic, 0)], timeout=10)] == [2]
    finally:
        probe.close()
    # the registered version carries its lineage: trigger, data snapshot, base vs candidate metrics
    registry = ModelRegistry(settings)
    (version,) = registry.list_versions()
    assert version.version == result.version and version.run_id == result.run_id
    assert version.tags["drift.event_id"] == event.event_id
    for side in ("current", "candidate"):
        for metric in ("mrr", "recall_at_1", "recall_at_5"):
            assert 0.0 <= version.metrics[f"{side}_{metric}"] <= 1.0
    assert (
        version.metrics["train_pairs"] == result.train_pairs == 48 and version.metrics["heldout_pairs"] >= 5
    )
    assert version.metrics["steps"] >= 3  # 48 pairs in batches of at most 16
    collection = resolve_alias(client, ALIAS)
    expected = take_snapshot(ALIAS, collection, None, scroll_chunks(client, collection), {})
    run_dir = Path(
        mlflow.artifacts.download_artifacts(
            run_id=result.run_id, dst_path=str(tmp_path / "dl"), tracking_uri=settings.tracking_uri()
        )
    )
    snapshot = json.loads((run_dir / "snapshot.json").read_text())
    assert snapshot["collection"] == collection == f"{ALIAS}__minilm-l6-v2"
    assert (snapshot["point_count"], snapshot["docs_sha256"]) == (expected.point_count, expected.docs_sha256)
    assert snapshot["document_count"] == 80 and snapshot["max_indexed_ts"] == expected.max_indexed_ts
    ends = end_offsets(kafka_conf, docs)
    assert snapshot["offsets"][pipe_group] == {f"{docs}:{p}": o for p, o in ends.items()}
    assert DriftEvent.model_validate_json((run_dir / "drift_event.json").read_text()) == event
    rows = [json.loads(line) for line in (run_dir / "dataset.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "train" for r in rows) == 48
    assert (settings.model_dir(result.version) / "modules.json").exists()
    # every registry change was published
    published = [
        ModelEvent.model_validate_json(m.value())
        for m in read_from(
            kafka_conf, models_topic, models_start, lambda ms: len(ms) >= 1 + result.promoted, timeout_s=20
        )
    ]
    assert [e.action for e in published] == ["registered", "promoted"][: 1 + result.promoted]
    assert published[0].version == result.version

    # a re-delivered event (crash after recording, before the commit) is not trained twice
    rewind = Consumer({**kafka_conf, "group.id": settings.training.group_id})
    rewind.commit(offsets=[TopicPartition(drift_topic, 0, 1)], asynchronous=False)
    rewind.close()
    again = DriftTrainingConsumer(settings, client).run(max_events=1, timeout_s=120)
    assert [(o.status, o.run_id) for o in again] == [("duplicate", result.run_id)]
    assert len(registry.list_versions()) == 1


def test_a_run_that_cannot_train_is_recorded_as_failed_and_committed(
    stack: Any,
    topic_factory: Any,
    group_factory: Any,
    producer_factory: Any,
    tmp_path: Path,
    kafka_conf: dict,
) -> None:
    drift_topic = topic_factory("drift", partitions=1)
    settings = TrainingSettings(
        qdrant=QdrantSettings(path=tmp_path / "q", collection=ALIAS),
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        registry=RegistryOptions(models_topic=None),
        training=TrainingOptions(drift_topic=drift_topic, group_id=group_factory("train")),
    )
    event = DriftEvent(
        event_id=f"drift-{uuid.uuid4().hex[:8]}",
        tenant="acme",
        kind="retrieval_score",
        score=0.2,
        threshold=0.05,
        reference_window={},
        current_window={},
        detected_at=utcnow(),
    )
    producer = producer_factory()
    producer.produce(drift_topic, value=event.to_bytes())
    assert producer.flush(10) == 0

    (outcome,) = DriftTrainingConsumer(settings, settings.qdrant.store()).run(max_events=1, timeout_s=120)

    assert outcome.status == "failed" and "no collection or alias" in (outcome.error or "")
    registry = ModelRegistry(settings)
    _, tags = registry.run_info(outcome.run_id or "")
    assert tags["drift.event_id"] == event.event_id and "LookupError" in tags["error"]
    assert registry.list_versions() == []
    probe = Consumer({**kafka_conf, "group.id": settings.training.group_id})
    try:
        assert [tp.offset for tp in probe.committed([TopicPartition(drift_topic, 0)], timeout=10)] == [1]
    finally:
        probe.close()


def test_registry_changes_publish_model_events(
    stack: Any, topic_factory: Any, tmp_path: Path, kafka_conf: dict
) -> None:
    models_topic = topic_factory("models", partitions=1)
    settings = TrainingSettings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        registry=RegistryOptions(models_topic=models_topic, model_name="embedder-x"),
    )
    registry = ModelRegistry(settings)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    version = registry.record_run(
        trigger=None, params={}, metrics={}, snapshot=None, model_dir=folder
    ).version
    assert version is not None
    registry.promote(version)
    registry.rollback()

    messages = read_from(kafka_conf, models_topic, {0: 0}, lambda ms: len(ms) >= 3, timeout_s=20)
    events = [ModelEvent.model_validate_json(m.value()) for m in messages]
    assert [(e.action, e.name, e.version) for e in events] == [
        ("registered", "embedder-x", version),
        ("promoted", "embedder-x", version),
        ("rolled_back", "embedder-x", "minilm-l6-v2"),
    ]
    assert events[1].model_uri == f"models:/embedder-x/{version}" and all(
        m.key() == b"embedder-x" for m in messages
    )


def test_runs_are_queued_in_order_one_at_a_time_and_committed_after_recording(
    stack: Any,
    topic_factory: Any,
    group_factory: Any,
    producer_factory: Any,
    tmp_path: Path,
    kafka_conf: dict,
) -> None:
    drift_topic, group = topic_factory("drift", partitions=1), group_factory("train")
    settings = TrainingSettings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        registry=RegistryOptions(models_topic=None),
        training=TrainingOptions(drift_topic=drift_topic, group_id=group, max_queued=2),
    )
    events = [
        DriftEvent(
            event_id=f"e{i}-{uuid.uuid4().hex[:6]}",
            tenant="acme",
            kind="dont_know_rate",
            score=0.3,
            threshold=0.1,
            reference_window={},
            current_window={},
            detected_at=utcnow(),
        )
        for i in range(4)
    ]
    producer = producer_factory()
    for ev in events:
        producer.produce(drift_topic, value=ev.to_bytes())
    assert producer.flush(10) == 0
    seen: list[tuple[str, float, float, int]] = []

    def runner(event: DriftEvent, registry: ModelRegistry) -> Any:
        """Records when it ran and what was committed then; records a real (failed) run."""
        probe = Consumer({**kafka_conf, "group.id": group})
        (tp,) = probe.committed([TopicPartition(drift_topic, 0)], timeout=10)
        probe.close()
        start = time.monotonic()
        time.sleep(0.4)
        rec = registry.record_run(
            trigger=event, params={}, metrics={}, snapshot=None, error="test: no training"
        )
        seen.append((event.event_id, start, time.monotonic(), tp.offset))
        raise TrainingFailed("no training in this test", rec.run_id)

    outcomes = DriftTrainingConsumer(settings, None, runner=runner).run(max_events=4, timeout_s=120)

    assert [o.event_id for o in outcomes] == [s[0] for s in seen] == [e.event_id for e in events]
    assert [o.status for o in outcomes] == ["failed"] * 4 and [o.offset for o in outcomes] == [0, 1, 2, 3]
    assert all(prev[2] <= nxt[1] for prev, nxt in itertools.pairwise(seen))  # never two at once
    # a run's own offset is never committed before it is recorded (the previous one's may still lag)
    assert all(committed <= k for k, (*_, committed) in enumerate(seen))
    probe = Consumer({**kafka_conf, "group.id": group})
    try:
        assert [tp.offset for tp in probe.committed([TopicPartition(drift_topic, 0)], timeout=10)] == [4]
    finally:
        probe.close()
    registry = ModelRegistry(settings)
    assert all(
        registry.run_for_trigger(e.event_id) == o.run_id for e, o in zip(events, outcomes, strict=True)
    )
