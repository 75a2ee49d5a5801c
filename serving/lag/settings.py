"""Settings of the lag and freshness monitor (``streamrag lag``, the API's ``/v1/lag``).

The monitor's own knobs live in one nested model, :class:`LagOptions`, so they never collide with
another deployable's fields: set them as ``STREAMRAG_LAG__<FIELD>`` (for example
``STREAMRAG_LAG__WINDOW_S=60``). Kafka is reached through the shared ``STREAMRAG_KAFKA__*`` fields.
All durations are in seconds.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from streamrag.config import CommonSettings
from streamrag.contracts import Groups, Topics


class LagOptions(BaseModel):
    """What the monitor watches, how often it samples and when a partition counts as unhealthy."""

    groups: list[str] = Field(
        default_factory=lambda: [Groups.PIPELINE, Groups.DRIFT, Groups.TRAINING],
        description="Groups always reported, even before they commit anything.",
    )
    discover_groups: bool = Field(
        default=True,
        description="Also report every other group found on the cluster that has committed offsets.",
    )
    interval_s: float = Field(default=5.0, gt=0, description="Seconds between the monitor's samples.")
    window_s: float = Field(
        default=120.0,
        gt=0,
        description="Sliding window the status rules look at (LAGGING, STALLED, REWOUND).",
    )
    stopped_after_s: float = Field(
        default=300.0,
        gt=0,
        description="A partition with lag > 0 whose committed offset has not moved for this long is STOPPED.",
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="Limit for each Kafka admin request and message read."
    )
    features_topic: str = Field(
        default=Topics.FEATURES, description="FeatureRecord topic freshness is read from."
    )
    freshness_lookback_s: float = Field(
        default=900.0,
        gt=0,
        description="Freshness covers the records appended in the last this many seconds.",
    )
    freshness_bucket_s: float = Field(
        default=60.0, gt=0, description="Width of each freshness window (one p50/p95/p99 point per bucket)."
    )
    dlq_topic: str = Field(
        default=Topics.DEAD_LETTER, description="Dead-letter topic whose depth is reported."
    )
    dlq_rate_window_s: float = Field(
        default=300.0, gt=0, description="The DLQ rate is the messages appended over this many seconds."
    )
    history_s: float = Field(
        default=900.0, gt=0, description="How much per-group lag history the monitor keeps for the dashboard."
    )

    @model_validator(mode="after")
    def _bucket_fits(self) -> LagOptions:
        if self.freshness_bucket_s > self.freshness_lookback_s:
            raise ValueError("freshness_bucket_s must not exceed freshness_lookback_s")
        return self


class LagSettings(CommonSettings):
    """The shared connection settings plus :class:`LagOptions` under ``lag``."""

    lag: LagOptions = LagOptions()
