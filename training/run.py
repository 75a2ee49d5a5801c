"""One training run: snapshot the store, fine-tune the current model, evaluate, register, maybe promote.

:func:`run_training` is what the drift consumer runs per event and what ``streamrag train run``
runs once. Every run that gets as far as a registry is recorded there, including a failed one
(status FAILED, with its trigger and error), so each drift event leaves a trace.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from streamrag.contracts import DriftEvent
from training.dataset import Dataset, Snapshot, build_dataset
from training.evaluate import Decision, decide, evaluate_model
from training.finetune import finetune
from training.registry import ModelRef, ModelRegistry
from training.settings import TrainingSettings, pipeline_version

log = logging.getLogger("streamrag.training")


class TrainingFailed(RuntimeError):
    """The run could not produce a model; it is recorded as FAILED in run ``run_id``."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(f"{message} (recorded as run {run_id})")
        self.run_id = run_id


@dataclass(frozen=True)
class RunResult:
    run_id: str
    trigger_event_id: str | None
    version: str
    """The registered model version (MLflow version number)."""
    pipeline_version: str
    current_model: str
    """The model the candidate started from and was compared with (``v<n>`` or ``base:<name>``)."""
    current: dict[str, float]
    candidate: dict[str, float]
    decision: Decision
    promoted: bool
    snapshot: Snapshot
    train_pairs: int
    heldout_pairs: int
    train_seconds: float
    total_seconds: float


def _params(settings: TrainingSettings, current: ModelRef, tenant: str | None) -> dict[str, Any]:
    opts = settings.training
    keys = (
        "max_pairs",
        "max_eval_pairs",
        "max_pairs_per_doc",
        "holdout_fraction",
        "epochs",
        "batch_size",
        "learning_rate",
        "warmup_ratio",
        "loss_scale",
        "seed",
        "promote_metric",
        "promote_margin",
    )
    return {
        **{k: getattr(opts, k) for k in keys},
        "current_model": current.label,
        "tenant": tenant or "*",
        "current_model_id": current.model_id,
        "alias": settings.qdrant.collection,
    }


def run_training(
    drift_event: DriftEvent | None,
    settings: TrainingSettings,
    store: Any,
    registry: ModelRegistry | None = None,
    tenant: str | None = None,
) -> RunResult:
    """Run one training run now, in this thread; returns its result or raises :class:`TrainingFailed`.

    Trains on ``tenant``'s chunks when given, else on the drift event's tenant when
    ``training.tenant_scope == "trigger"``, else on every tenant's. Exceptions raised before
    anything could be recorded (the registry is unreachable) propagate unchanged.
    """
    started = time.perf_counter()
    registry = registry or ModelRegistry(settings)
    opts = settings.training
    if tenant is None and drift_event is not None and opts.tenant_scope == "trigger":
        tenant = drift_event.tenant
    current = registry.current()
    params = _params(settings, current, tenant)
    staging = settings.models_dir() / f".staging-{uuid.uuid4().hex[:12]}"
    dataset: Dataset | None = None
    try:
        dataset = build_dataset(settings, store, tenant)
        if len(dataset.train) < opts.min_train_pairs or len(dataset.heldout) < opts.min_eval_pairs:
            raise ValueError(
                f"not enough data: {len(dataset.train)} train / {len(dataset.heldout)} held-out pairs, "
                f"need {opts.min_train_pairs} / {opts.min_eval_pairs}"
            )
        tuned = finetune(current.path, dataset.train, staging, opts)
        before = evaluate_model(current.path, dataset.heldout, opts)
        after = evaluate_model(staging, dataset.heldout, opts)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        snapshot = dataset.snapshot.to_dict() if dataset else None
        recorded = registry.record_run(
            trigger=drift_event,
            params=params,
            metrics={},
            snapshot=snapshot,
            error=f"{type(exc).__name__}: {exc}",
        )
        log.warning("training run %s failed: %s", recorded.run_id, exc)
        raise TrainingFailed(str(exc), recorded.run_id) from exc
    decision = decide(before, after, opts)
    metrics = {
        **{f"current_{k}": v for k, v in before.metrics.items()},
        **{f"candidate_{k}": v for k, v in after.metrics.items()},
        "train_pairs": len(dataset.train),
        "heldout_pairs": len(dataset.heldout),
        "steps": tuned.steps,
        "train_seconds": tuned.seconds,
        "loss_first": tuned.mean_loss_first,
        "loss_last": tuned.mean_loss_last,
        "promote": float(decision.promote),
    }
    try:
        recorded = registry.record_run(
            trigger=drift_event,
            params=params,
            metrics=metrics,
            snapshot=dataset.snapshot.to_dict(),
            artifacts={
                "dataset.jsonl": dataset.to_records(),
                "decision.json": {**asdict(decision), "reason": decision.reason},
            },
            model_dir=staging,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # moved into the cache when registered
    assert recorded.version is not None  # a run with a model always registers one
    promoted = False
    if decision.promote and opts.auto_promote:
        registry.promote(recorded.version)
        promoted = True
    log.info(
        "training run %s: version %s, %s%s",
        recorded.run_id,
        recorded.version,
        decision.reason,
        " -> promoted" if promoted else "",
    )
    return RunResult(
        run_id=recorded.run_id,
        trigger_event_id=drift_event.event_id if drift_event else None,
        version=recorded.version,
        pipeline_version=pipeline_version(settings.registry.model_name, recorded.version),
        current_model=current.label,
        current=before.metrics,
        candidate=after.metrics,
        decision=decision,
        promoted=promoted,
        snapshot=dataset.snapshot,
        train_pairs=len(dataset.train),
        heldout_pairs=len(dataset.heldout),
        train_seconds=tuned.seconds,
        total_seconds=time.perf_counter() - started,
    )
