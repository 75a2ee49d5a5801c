"""The model registry: MLflow runs (lineage) and registered model versions (what may be deployed).

Each training run is an MLflow run of the experiment ``registry.experiment`` with its parameters,
metrics (current vs candidate model), the triggering :class:`~streamrag.contracts.DriftEvent`
(as ``drift_event.json`` and ``drift.*`` tags) and the data snapshot (``snapshot.json`` and
``snapshot.*`` tags). A run that produced a model logs the model folder as the artifact
``model`` and registers it as a version of ``registry.model_name``; the version's loadable copy
is ``<cache_dir>/models/<name>-<version>`` (materialised from the artifact store when missing).

The alias ``production`` (``registry.production_alias``) names the version in service. Its
history is kept in the registered model's tag ``production_history`` (a JSON list, oldest first),
so :meth:`ModelRegistry.rollback` can go back one step at a time; rolling back the first promotion
returns to the base model (no alias). Registry changes are serialised by a file lock beside the
local database and each publishes a :class:`~streamrag.contracts.ModelEvent`.

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts in
``<data_dir>/mlflow/artifacts``; no tracking server is needed (any MLflow tracking URI works).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamrag.contracts import DriftEvent, ModelEvent, utcnow
from training.events import ModelEventPublisher
from training.settings import TrainingSettings, pipeline_version

log = logging.getLogger("streamrag.training")

HISTORY_TAG = "production_history"
_THREAD_LOCK = threading.Lock()


class RegistryError(RuntimeError):
    """A registry operation is not possible (unknown version, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class ModelRef:
    """A loadable embedding model and the names the pipeline and the API know it by."""

    path: Path
    version: str | None
    """Registry version; ``None`` for the base model."""
    pipeline_version: str
    """``embedding_model_version`` of the pipeline: the suffix of its Qdrant collection."""
    model_id: str
    """What the pipeline writes into every point's ``model_id``."""

    @property
    def label(self) -> str:
        return f"v{self.version}" if self.version else f"base:{self.pipeline_version}"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str | None
    created_at: datetime
    production: bool
    model_uri: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    version: str | None
    """The registered model version, or ``None`` for a run that produced no model."""


class ModelRegistry:
    """MLflow-backed registry of the embedding model. Not thread-safe: one per thread."""

    def __init__(self, settings: TrainingSettings, publisher: ModelEventPublisher | None = None) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        self.settings = settings
        self.name = settings.registry.model_name
        self.alias = settings.registry.production_alias
        uri = settings.tracking_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.publisher = publisher or ModelEventPublisher(
            settings.kafka.librdkafka(), settings.registry.models_topic
        )
        self._experiment_id: str | None = None

    # --- runs ----------------------------------------------------------------------------------------

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            name = self.settings.registry.experiment
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                self.settings.artifacts_dir().mkdir(parents=True, exist_ok=True)
                self._experiment_id = self.client.create_experiment(
                    name, artifact_location=self.settings.artifacts_dir().as_uri()
                )
            else:
                self._experiment_id = str(exp.experiment_id)
        return self._experiment_id

    def record_run(
        self,
        *,
        trigger: DriftEvent | None,
        params: dict[str, Any],
        metrics: dict[str, float],
        snapshot: dict[str, Any] | None,
        artifacts: dict[str, Any] | None = None,
        model_dir: Path | None = None,
        error: str | None = None,
        run_name: str | None = None,
    ) -> RecordedRun:
        """Log one run (FAILED when ``error``) and register ``model_dir`` as a new version.

        ``artifacts`` maps a file name (``.json`` or ``.jsonl``) to JSON-able content. The model
        folder is uploaded as artifact ``model`` and then *moved* to its cache location.
        """
        from mlflow.entities import Metric, Param, RunTag

        tags = {
            "trigger": "drift" if trigger else "manual",
            **_trigger_tags(trigger),
            **_snapshot_tags(snapshot),
        }
        if error:
            tags["error"] = error[:4000]
        name = run_name or (f"drift-{trigger.kind}-{trigger.tenant}" if trigger else "manual")
        run = self.client.create_run(self.experiment_id(), run_name=name, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())],
            params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        if trigger is not None:
            self.client.log_text(run_id, trigger.model_dump_json(indent=2), "drift_event.json")
        if snapshot is not None:
            self.client.log_dict(run_id, snapshot, "snapshot.json")
        for file, content in (artifacts or {}).items():
            if file.endswith(".jsonl"):
                self.client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in content), file)
            else:
                self.client.log_dict(run_id, content, file)
        version = None
        if model_dir is not None and error is None:
            self.client.log_artifacts(run_id, str(model_dir), "model")
            version = self._register(
                run_id, model_dir, {**_trigger_tags(trigger), **_snapshot_tags(snapshot)}
            )
        self.client.set_terminated(run_id, "FAILED" if error else "FINISHED")
        return RecordedRun(run_id, version)

    def _register(self, run_id: str, model_dir: Path, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            with contextlib.suppress(MlflowException):  # a concurrent registrar may have created it
                self.client.create_registered_model(self.name, description="streamrag dense embedder")
        mv = self.client.create_model_version(self.name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
        version = str(mv.version)
        self.client.set_model_version_tag(
            self.name, version, "pipeline_version", pipeline_version(self.name, version)
        )
        target = self.settings.model_dir(version)
        if target.exists():  # left by an older database with the same version numbers: stale
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(model_dir), str(target))
        self._publish("registered", version)
        log.info("registered %s version %s (run %s) at %s", self.name, version, run_id, target)
        return version

    def run_for_trigger(self, event_id: str) -> str | None:
        """The id of a finished or failed run already recorded for drift event ``event_id``."""
        if "'" in event_id:
            return None  # not expressible in MLflow's filter syntax: treat as new
        runs = self.client.search_runs(
            [self.experiment_id()], f"tags.`drift.event_id` = '{event_id}'", max_results=1
        )
        return str(runs[0].info.run_id) if runs else None

    def run_info(self, run_id: str) -> tuple[dict[str, float], dict[str, str]]:
        """(metrics, tags) of a run."""
        run = self.client.get_run(run_id)
        return dict(run.data.metrics), dict(run.data.tags)

    # --- versions ------------------------------------------------------------------------------------

    def list_versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first, with its run's metrics."""
        prod = self._production_version()
        out = []
        for mv in self.client.search_model_versions(f"name='{self.name}'"):
            metrics: dict[str, float] = {}
            if mv.run_id:
                with contextlib.suppress(Exception):  # a deleted run leaves the version listed
                    metrics = dict(self.client.get_run(mv.run_id).data.metrics)
            out.append(
                VersionInfo(
                    version=str(mv.version),
                    run_id=mv.run_id or None,
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                    production=str(mv.version) == prod,
                    model_uri=self.model_uri(str(mv.version)),
                    tags=dict(mv.tags or {}),
                    metrics=metrics,
                )
            )
        return sorted(out, key=lambda v: int(v.version))

    def model_uri(self, version: str) -> str:
        return f"models:/{self.name}/{version}"

    def _production_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException:
            return None

    def base_model(self) -> ModelRef:
        from streamrag.sentence_model import default_model_path

        reg = self.settings.registry
        return ModelRef(
            reg.base_model_path or default_model_path(), None, reg.base_model_version, reg.base_model_id
        )

    def model(self, version: str) -> ModelRef:
        """A registered version, its folder materialised from the artifact store when missing."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.name, version)
        except MlflowException:
            raise RegistryError(f"{self.name} has no version {version!r}") from None
        path = self.settings.model_dir(version)
        if not (path / "modules.json").exists():
            self._materialise(str(mv.run_id), path)
        return ModelRef(path, version, pipeline_version(self.name, version), self.model_uri(version))

    def _materialise(self, run_id: str, path: Path) -> None:
        import mlflow.artifacts

        staging = path.parent / f".download-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path="model",
                dst_path=str(staging),
                tracking_uri=self.settings.tracking_uri(),
            )
            if path.exists():
                shutil.rmtree(path)
            shutil.move(got, str(path))  # a whole folder appears at once: readers never see a partial model
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def current(self) -> ModelRef:
        """The production model, or the base model when no version is promoted."""
        version = self._production_version()
        return self.model(version) if version else self.base_model()

    def production_history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            raw = self.client.get_registered_model(self.name).tags.get(HISTORY_TAG, "[]")
        except MlflowException:
            return []
        return [str(v) for v in json.loads(raw)]

    def promote(self, version: str) -> ModelRef:
        """Point ``production`` at ``version`` and publish ``promoted``; a no-op for the current one."""
        with self._lock():
            ref = self.model(version)  # raises RegistryError for an unknown version
            history = self.production_history()
            if self._production_version() == version:
                return ref
            self.client.set_registered_model_alias(self.name, self.alias, version)
            self._set_history([*history, version])
            self.client.set_model_version_tag(self.name, version, "promoted_at", utcnow().isoformat())
            self._publish("promoted", version)
        log.info("promoted %s version %s to %s", self.name, version, self.alias)
        return ref

    def rollback(self) -> ModelRef:
        """Back to the previous production version (the base model after the first promotion)."""
        with self._lock():
            current = self._production_version()
            if current is None:
                raise RegistryError(f"{self.name} has no {self.alias} version to roll back from")
            history = self.production_history()
            while history and history[-1] == current:
                history.pop()
            if history:
                self.client.set_registered_model_alias(self.name, self.alias, history[-1])
                ref = self.model(history[-1])
            else:
                self.client.delete_registered_model_alias(self.name, self.alias)
                ref = self.base_model()
            self._set_history(history)
            self._publish(
                "rolled_back",
                ref.version or ref.pipeline_version,
                self.model_uri(ref.version) if ref.version else ref.path.as_uri(),
            )
        log.info("rolled %s back from version %s to %s", self.name, current, ref.label)
        return ref

    # --- internals ------------------------------------------------------------------------------------

    def _set_history(self, history: list[str]) -> None:
        # A tag value holds 5000 characters; the last 200 promotions are plenty to roll back through.
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[-200:]))

    def _publish(self, action: str, version: str, model_uri: str | None = None) -> None:
        event = ModelEvent.model_validate(
            {
                "action": action,
                "name": self.name,
                "version": version,
                "model_uri": model_uri or self.model_uri(version),
                "ts": utcnow(),
            }
        )
        self.publisher.publish(event)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise read-modify-write of the alias and its history across threads and local processes."""
        path = self.settings.mlflow_dir() / ".registry.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCK, path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _trigger_tags(trigger: DriftEvent | None) -> dict[str, str]:
    if trigger is None:
        return {}
    return {
        "drift.event_id": trigger.event_id,
        "drift.kind": trigger.kind,
        "drift.tenant": trigger.tenant,
        "drift.score": f"{trigger.score:.6g}",
        "drift.threshold": f"{trigger.threshold:.6g}",
        "drift.detected_at": trigger.detected_at.isoformat(),
    }


def _snapshot_tags(snapshot: dict[str, Any] | None) -> dict[str, str]:
    if snapshot is None:
        return {}
    keys = ("collection", "point_count", "document_count", "max_indexed_ts", "docs_sha256", "tenant")
    return {f"snapshot.{k}": str(snapshot.get(k)) for k in keys}
