"""Re-indexing with a new embedding model without downtime: a shadow build, then an atomic switch.

1. **Build.** A second feature pipeline (:func:`streams.runner.start_in_thread`) replays the
   compacted source topics from the beginning as its own group, ``Groups.reindex(version)``, with
   the new model, into the new model's collection ``<alias>__<version>``. ``IndexStore.ensure``
   creates that collection but leaves an existing alias alone, so queries keep reading the live
   collection. Feature records are off by default (``reindex.emit_features``): a replay would
   look like drift to the drift detector.
2. **Catch up.** Wait until the reindex group's committed offsets equal the log-end offsets of
   every source partition: the new collection then reflects every change the sources hold.
3. **Switch.** Repoint the alias in one atomic call (:mod:`training.aliases`). Queries never mix
   two models' vectors: each collection holds one model's, and the alias names one collection.

After the switch the new collection must keep receiving changes: keep the shadow pipeline
running (``keep_running``) or restart the deployed pipeline with the new model and the reindex
group (:func:`pipeline_env` prints the settings), then stop the old one. Rolling back
(:meth:`AliasSwitcher.rollback`) points the alias at the previous collection, which is intact;
it is as fresh as its own pipeline kept it. The query side (the API) must embed queries with the
model of the collection the alias names (the collection suffix is the model's pipeline version).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from streamrag.contracts import Groups
from streamrag.contracts import IndexSchema as S
from streamrag.store import VectorStore
from streams.runner import RunningPipeline, start_in_thread
from streams.settings import PipelineSettings
from training.aliases import AliasSwitcher, Switch
from training.offsets import GroupProgress, group_progress
from training.registry import ModelRef
from training.settings import TrainingSettings

log = logging.getLogger("streamrag.training")


class ReindexError(RuntimeError):
    """The shadow build failed or did not catch up in time; the alias was not touched."""


def pipeline_settings(
    settings: TrainingSettings, model: ModelRef, base: PipelineSettings | None = None
) -> PipelineSettings:
    """The shadow pipeline's settings: ``base`` (default: the environment's pipeline settings) with the
    new model, its collection suffix and its reindex group. Same alias, same source topics."""
    base = base or PipelineSettings(
        kafka=settings.kafka, qdrant=settings.qdrant, source_topics=settings.source_topics
    )
    return base.model_copy(
        update={
            "pipeline_group": Groups.reindex(model.pipeline_version),
            "embedding_model_path": model.path,
            "embedding_model_version": model.pipeline_version,
            "embedding_model_id": model.model_id,
            "features_topic": base.features_topic if settings.reindex.emit_features else None,
            "metrics_port": None,  # the live pipeline may hold the default port in this process
            "stop_when_idle_s": None,
        }
    )


def pipeline_env(settings: PipelineSettings) -> dict[str, str]:
    """The variables that make ``streamrag pipeline run`` continue the shadow build as the live pipeline."""
    return {
        "STREAMRAG_PIPELINE_GROUP": settings.group_id,
        "STREAMRAG_EMBEDDING_MODEL_PATH": str(settings.embedding_model_path),
        "STREAMRAG_EMBEDDING_MODEL_VERSION": settings.embedding_model_version,
        "STREAMRAG_EMBEDDING_MODEL_ID": settings.embedding_model_id,
    }


def wait_caught_up(
    settings: PipelineSettings, running: RunningPipeline | None, timeout_s: float, poll_s: float = 0.5
) -> GroupProgress:
    """Block until ``settings.group_id`` has committed up to the end of every source partition.

    Raises :class:`ReindexError` when ``running`` dies or ``timeout_s`` passes first.
    """
    conf = settings.kafka.librdkafka()
    deadline = time.monotonic() + timeout_s
    while True:
        if running is not None and not running.alive():
            raise ReindexError(f"the shadow pipeline stopped: {running.error!r}")
        progress = group_progress(conf, settings.group_id, settings.source_topics)
        if progress.caught_up:
            return progress
        if time.monotonic() > deadline:
            raise ReindexError(
                f"{settings.group_id} still {progress.lag} messages behind after {timeout_s:.0f}s"
            )
        time.sleep(poll_s)


@dataclass
class ReindexResult:
    model: ModelRef
    collection: str
    points: int
    seconds: float
    """From the start of the shadow build to the switch (or to catch-up without one)."""
    switch: Switch | None
    pipeline: PipelineSettings
    running: RunningPipeline | None
    """The shadow pipeline, when ``keep_running``: the caller stops it."""


def reindex(
    settings: TrainingSettings,
    store: VectorStore,
    model: ModelRef,
    *,
    base: PipelineSettings | None = None,
    embedder: Any = None,
    switch: bool = True,
    keep_running: bool = False,
) -> ReindexResult:
    """Build ``model``'s collection beside the live one, wait for catch-up, then switch the alias.

    ``store`` must be the process's one store in embedded mode. ``embedder`` (an
    :class:`streams.embed.Embedder` of ``model.path``) saves loading it again. The alias is
    switched only when the build caught up and, if the live collection has points, the new one
    has some too; otherwise :class:`ReindexError` is raised and the alias is left as it was.
    """
    started = time.monotonic()
    shadow = pipeline_settings(settings, model, base)
    switcher = AliasSwitcher(store, shadow.qdrant.collection)
    collection = S.collection_for(shadow.qdrant.collection, shadow.embedding_model_version)
    if switcher.current() == collection:
        raise ReindexError(f"the alias already points at {collection}")
    log.info(
        "shadow re-index into %s as group %s (live: %s)", collection, shadow.group_id, switcher.current()
    )
    running = start_in_thread(shadow, store=store, embedder=embedder)
    try:
        wait_caught_up(shadow, running, settings.reindex.timeout_s, settings.reindex.poll_s)
        points = store.count(collection)
        done: Switch | None = None
        if switch:
            live = switcher.current()
            if live is not None and points == 0 and store.count(live) > 0:
                raise ReindexError(f"{collection} is empty while {live} is not: not switching")
            done = switcher.switch(collection, reason=f"reindex {model.label}")
        seconds = time.monotonic() - started
    except BaseException:
        running.stop()
        raise
    if not keep_running:
        running.stop()
    return ReindexResult(model, collection, points, seconds, done, shadow, running if keep_running else None)


# --- status -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionStatus:
    name: str
    model_version: str
    points: int
    model_id: str | None
    """The ``model_id`` of one of its points (``None`` when empty)."""
    live: bool
    group: str
    """The consumer group that feeds it: the pipeline's for the base model, else its reindex group."""
    lag: int | None
    """Messages of the source topics ``group`` has not committed (``None``: Kafka did not say)."""


@dataclass(frozen=True)
class IndexStatus:
    alias: str
    live: str | None
    collections: list[CollectionStatus]
    switches: list[Switch]


def index_status(settings: TrainingSettings, store: VectorStore) -> IndexStatus:
    """Each collection behind the alias (points, model version and id, its group's lag) and the switches."""
    from confluent_kafka import KafkaException

    alias = settings.qdrant.collection
    switcher = AliasSwitcher(store, alias)
    live = switcher.current()
    conf = settings.kafka.librdkafka()
    names = store.collections()
    out: list[CollectionStatus] = []
    for name in names:
        if not name.startswith(f"{alias}__") or name.endswith(S.REGISTRY_SUFFIX):
            continue
        version = name.removeprefix(f"{alias}__")
        group = (
            settings.pipeline_group
            if version == settings.registry.base_model_version
            else Groups.reindex(version)
        )
        try:
            lag: int | None = group_progress(conf, group, settings.source_topics).lag
        except (KafkaException, LookupError):
            lag = None
        sample = next(store.scroll(name, fields=[S.MODEL_ID], page=1), None)
        model_id = str(sample[1].get(S.MODEL_ID)) if sample and sample[1] else None
        points = store.count(name)
        out.append(CollectionStatus(name, version, points, model_id, name == live, group, lag))
    return IndexStatus(alias, live, out, switcher.history())
