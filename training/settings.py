"""Settings of the training pipeline (``streamrag train``, ``streamrag models``, ``streamrag index``).

Shared connection settings come from :class:`~streamrag.config.CommonSettings`; what is specific
lives in three groups so the shared names keep theirs:

* ``training`` (:class:`TrainingOptions`): dataset, fine-tuning, evaluation, promotion and the
  drift consumer, e.g. ``STREAMRAG_TRAINING__MAX_PAIRS=400``;
* ``registry`` (:class:`RegistryOptions`): the MLflow model registry, e.g.
  ``STREAMRAG_REGISTRY__TRACKING_URI=sqlite:////srv/mlflow.db``;
* ``reindex`` (:class:`ReindexOptions`): the shadow re-index, e.g. ``STREAMRAG_REINDEX__TIMEOUT_S=3600``.

``source_topics`` and ``pipeline_group`` read the same variables as the feature pipeline
(``STREAMRAG_SOURCE_TOPICS``, ``STREAMRAG_GROUP_ID``), so a trainer deployed beside a pipeline
snapshots exactly what that pipeline indexes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

from streamrag.config import CommonSettings
from streamrag.contracts import Groups, Topics

Metric = Literal["mrr", "recall_at_1", "recall_at_5", "recall_at_10"]


class TrainingOptions(BaseModel):
    """What one training run does, and how the drift consumer schedules runs."""

    # --- dataset (units: pairs, characters, words) ---
    tenant_scope: Literal["all", "trigger"] = Field(
        default="all", description="'trigger': train on the drifting tenant's chunks only."
    )
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of documents held out.")
    max_pairs: int = Field(default=200, ge=2, description="Training pairs per run (a seeded sample).")
    max_eval_pairs: int = Field(default=500, ge=1, description="Held-out pairs evaluated per run.")
    max_pairs_per_doc: int = Field(default=4, ge=1, description="So long documents do not dominate.")
    min_train_pairs: int = Field(
        default=16, ge=2, description="Fewer and the run fails as 'not enough data'."
    )
    min_eval_pairs: int = Field(default=5, ge=1)
    min_passage_chars: int = Field(default=80, ge=1)
    query_words: tuple[int, int] = Field(default=(4, 40), description="Word-count bounds of a pseudo-query.")
    seed: int = 0
    # --- fine-tuning ---
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=2, description="Pairs per step; the other pairs are negatives.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak AdamW LR (2e-5 did not help here).")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of steps with a rising LR.")
    loss_scale: float = Field(default=20.0, gt=0, description="Inverse temperature of the in-batch softmax.")
    torch_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; None = all.")
    device: str = Field(
        default="auto", description="torch device for training and evaluation; auto = cuda if available."
    )
    # --- evaluation and promotion ---
    eval_k: tuple[int, ...] = (1, 5, 10)
    promote_metric: Metric = "mrr"
    promote_margin: float = Field(
        default=0.01, ge=0, description="Promote when candidate >= current + margin (metric units, 0..1)."
    )
    auto_promote: bool = Field(
        default=False,
        description="True: promote (and so re-index) when the candidate beats the current model on the held-out "
        "pseudo-queries. Off by default: on a new domain (bench/domain_loop.py) a promoted model gained 1.2 "
        "MRR points on the new corpus's real questions and lost 1.2 on the old one's, though its pseudo-query "
        "MRR rose 3.1 points; register, then check with `streamrag eval` and `streamrag models promote`.",
    )
    # --- the drift consumer ---
    drift_topic: str = Topics.DRIFT
    group_id: str = Groups.TRAINING
    max_queued: int = Field(default=8, ge=1, description="Queued runs before consumption pauses.")
    poll_timeout_s: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _metric_is_computed(self) -> TrainingOptions:
        if self.promote_metric != "mrr" and int(self.promote_metric.rsplit("_", 1)[1]) not in self.eval_k:
            raise ValueError(f"promote_metric {self.promote_metric} needs its k in eval_k {self.eval_k}")
        if self.query_words[0] > self.query_words[1]:
            raise ValueError("query_words must be (min, max)")
        return self


class RegistryOptions(BaseModel):
    """The MLflow registry. ``None`` paths resolve under ``data_dir / "mlflow"``."""

    tracking_uri: str | None = Field(
        default=None, description="Default sqlite:///<data_dir>/mlflow/mlflow.db."
    )
    artifacts_dir: Path | None = Field(default=None, description="Default <data_dir>/mlflow/artifacts.")
    experiment: str = "streamrag-embedder"
    model_name: str = Field(default="streamrag-embedder", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    production_alias: str = "production"
    models_topic: str | None = Field(default=Topics.MODELS, description="None: publish no ModelEvent.")
    # The model used before any version is promoted (what the pipeline indexes by default).
    base_model_path: Path | None = Field(default=None, description="None: the packaged MiniLM.")
    base_model_version: str = "minilm-l6-v2"
    base_model_id: str = "sentence-transformers/all-MiniLM-L6-v2"


class ReindexOptions(BaseModel):
    timeout_s: float = Field(
        default=1800.0, gt=0, description="Longest wait for the shadow build to catch up."
    )
    poll_s: float = Field(default=0.5, gt=0, description="How often catch-up is checked.")
    emit_features: bool = Field(
        default=False, description="Replays would flood the drift detector with another model's vectors."
    )


class TrainingSettings(CommonSettings):
    training: TrainingOptions = TrainingOptions()
    registry: RegistryOptions = RegistryOptions()
    reindex: ReindexOptions = ReindexOptions()
    source_topics: list[str] = Field(
        default_factory=lambda: list(Topics.SOURCES),
        validation_alias=AliasChoices("STREAMRAG_SOURCE_TOPICS", "source_topics"),
    )

    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    def tracking_uri(self) -> str:
        return self.registry.tracking_uri or f"sqlite:///{(self.mlflow_dir() / 'mlflow.db').resolve()}"

    def artifacts_dir(self) -> Path:
        return (self.registry.artifacts_dir or self.mlflow_dir() / "artifacts").resolve()

    def models_dir(self) -> Path:
        """Where model folders live: ``<cache_dir>/models/<name>-<version>``."""
        return self.cache_dir / "models"

    def model_dir(self, version: str) -> Path:
        return self.models_dir() / pipeline_version(self.registry.model_name, version)


def pipeline_version(model_name: str, version: str) -> str:
    """The feature pipeline's ``embedding_model_version`` (and collection suffix) of a registry version.

    ``("streamrag-embedder", "3") -> "streamrag-embedder-3"``: lower case, ``[a-z0-9._-]`` only.
    """
    return re.sub(r"[^a-z0-9._-]+", "-", f"{model_name}-{version}".lower())


def torch_device(setting: str) -> str:
    """``auto`` picks the GPU when torch sees one, so the same code trains on a GPU machine."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
