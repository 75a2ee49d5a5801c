"""The monitor's reports as pydantic models: the API's responses and ``streamrag lag --json``.

``serving/lag/schema.json`` is the JSON Schema of :class:`MonitorReport` (what ``--json`` prints);
it is generated from these models by :func:`report_json_schema` and a unit test keeps the file and
the models equal. Offsets and lags are in messages, durations in seconds, times are UTC ISO 8601.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.lag.status import Status


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartitionLag(_Model):
    """One partition a group consumes."""

    topic: str
    partition: int = Field(ge=0)
    committed_offset: int | None = Field(
        description="The group's committed offset (next message to read); null: nothing committed."
    )
    log_start_offset: int = Field(ge=0, description="Low watermark: the oldest offset still in the log.")
    log_end_offset: int = Field(ge=0, description="High watermark: the offset the next message will get.")
    lag: int = Field(
        ge=0,
        description="Messages not consumed: log_end_offset - committed_offset, or log_end_offset - "
        "log_start_offset (everything in the log) when nothing is committed.",
    )
    lag_seconds: float | None = Field(
        ge=0,
        description="Age of the oldest unconsumed message (now - its broker timestamp); 0 when lag is 0; "
        "null when it could not be read.",
    )
    status: Status
    reason: str = Field(description="Why the status rules chose this status.")


class GroupLag(_Model):
    """A consumer group: its partitions, totals and status (the worst of its partitions)."""

    group: str
    state: str = Field(description="The broker's group state (STABLE, EMPTY, DEAD, ...).")
    members: int = Field(ge=0, description="Active members right now.")
    status: Status
    status_code: int = Field(ge=0, le=4, description="0 OK, 1 LAGGING, 2 STALLED, 3 STOPPED, 4 REWOUND.")
    total_lag: int = Field(ge=0, description="Sum of the partitions' lag, messages.")
    max_lag_seconds: float | None = Field(
        ge=0, description="Largest partition lag_seconds; null if none known."
    )
    partitions: list[PartitionLag]
    errors: list[str] = Field(description="What could not be read (a deleted topic, a broker error).")


class LagReport(_Model):
    """Every monitored group at one moment."""

    sampled_at: datetime
    samples: int = Field(
        ge=1, description="Samples of the partition with the longest history the statuses were judged on."
    )
    window_s: float = Field(gt=0)
    stopped_after_s: float = Field(gt=0)
    ok: bool = Field(description="True when every group's status is OK.")
    groups: list[GroupLag]


class FreshnessStats(_Model):
    """Percentiles of freshness = indexed_ts - source_ts, seconds; null when there are no records."""

    count: int = Field(ge=0)
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None


class FreshnessWindow(FreshnessStats):
    """Records appended (broker timestamp) in [start, end)."""

    start: datetime
    end: datetime


class DlqStats(_Model):
    topic: str
    exists: bool
    depth: int = Field(
        ge=0, description="Messages in the topic: sum over partitions of high - low watermark."
    )
    rate_per_s: float = Field(ge=0, description="Messages appended per second over window_s.")
    window_s: float = Field(gt=0)


class FreshnessReport(_Model):
    """End-to-end freshness from the features topic, plus the dead-letter topic."""

    topic: str
    sampled_at: datetime
    lookback_s: float = Field(gt=0)
    bucket_s: float = Field(gt=0)
    overall: FreshnessStats = Field(description="All records of the last lookback_s seconds.")
    windows: list[FreshnessWindow] = Field(description="One entry per bucket_s bucket, oldest first.")
    invalid_records: int = Field(ge=0, description="Records without parsable source_ts/indexed_ts.")
    error: str | None = Field(description="Why the features topic could not be read, if it could not.")
    dlq: DlqStats


class LagPoint(_Model):
    ts: datetime
    total_lag: int = Field(ge=0)
    max_lag_seconds: float | None
    status: Status


class GroupHistory(_Model):
    group: str
    points: list[LagPoint]


class LagHistory(_Model):
    """Per-group totals the monitor kept, oldest first (``GET /v1/lag/history``)."""

    groups: list[GroupHistory]


class MonitorReport(_Model):
    """What ``streamrag lag --json`` prints (one object per line with ``--watch``)."""

    schema_version: Literal[1] = 1
    lag: LagReport
    freshness: FreshnessReport | None = Field(description="Null when --no-freshness was given.")


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`MonitorReport` (the content of ``schema.json``)."""
    schema = MonitorReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://streamrag.dev/schemas/lag-report-v1.json"
    return schema
