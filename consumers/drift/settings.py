"""Settings of the drift consumer (``streamrag consumers run``).

Everything specific to drift lives under ``drift`` so the shared Kafka settings keep their names:
``STREAMRAG_DRIFT__REFERENCE_SIZE=500``, ``STREAMRAG_DRIFT__DRIFT_TOPIC=...``, next to
``STREAMRAG_KAFKA__BOOTSTRAP_SERVERS``. Topic partitions and replication of the topics the app
creates (its observations topic and table changelog) come from ``kafka.partitions`` and
``kafka.replication_factor``.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator

from consumers.drift.windows import WindowConfig
from streamrag.config import CommonSettings
from streamrag.contracts import Groups, Topics


class DriftOptions(BaseModel):
    """Window sizes (in observations), thresholds (in each detector's unit) and topics."""

    app_id: str = Field(default=Groups.DRIFT, description="Faust app id: consumer group and topic prefix.")
    features_topic: str = Topics.FEATURES
    queries_topic: str = Topics.QUERIES
    drift_topic: str = Field(default=Topics.DRIFT, description="Where DriftEvents are published.")

    reference_size: int = Field(default=300, ge=2, description="Observations in the reference window.")
    window_size: int = Field(default=300, ge=2, description="Observations in the sliding current window.")
    evaluate_every: int = Field(default=25, ge=1, description="Observations between evaluations.")
    cooldown_items: int = Field(
        default=1000, ge=0, description="Observations after a drift event before the next evaluation."
    )

    mmd_alpha: float = Field(default=0.001, gt=0, lt=1, description="Significance level of the MMD test.")
    mmd_permutations: int = Field(default=2000, ge=1, le=100_000, description="Permutations per MMD test.")
    mmd_min_statistic: float = Field(
        default=0.01, ge=0, description="Effect-size floor on MMD² (RBF kernel, median bandwidth)."
    )
    mmd_seed: int = Field(default=0, description="Seed of the permutations (tests are deterministic).")
    score_drop_threshold: float = Field(
        default=0.05, ge=0, description="Drift when mean top-1 retrieval score falls by more (cosine units)."
    )
    dont_know_rise_threshold: float = Field(
        default=0.10, ge=0, le=1, description="Drift when the share of don't-know answers rises by more."
    )

    observations_retention_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="Retention of the internal observations topic."
    )
    session_timeout_s: float = Field(
        default=60.0, ge=6, le=300,
        description="Group session timeout: how long a dead worker holds its partitions before a rebalance.",
    )  # fmt: skip
    stats_interval_s: float = Field(default=60.0, gt=0, description="How often counters are logged.")

    @model_validator(mode="after")
    def _reachable_alpha(self) -> DriftOptions:
        # the smallest permutation p-value is 1 / (B + 1); below alpha the test could never fire
        if self.mmd_alpha * (self.mmd_permutations + 1) < 1:
            raise ValueError(f"mmd_permutations must be >= {math.ceil(1 / self.mmd_alpha) - 1} for mmd_alpha")
        return self

    def window_config(self) -> WindowConfig:
        return WindowConfig(
            reference_size=self.reference_size, window_size=self.window_size,
            evaluate_every=self.evaluate_every, cooldown_items=self.cooldown_items,
        )  # fmt: skip

    def observations_topic(self) -> str:
        """The app's internal topic of observations keyed by tenant (co-partitioned with its table)."""
        return f"{self.app_id}-observations"


class DriftSettings(CommonSettings):
    """Kafka coordinates (shared) plus :class:`DriftOptions` under ``drift``."""

    drift: DriftOptions = DriftOptions()
