"""``serving/lag/schema.json`` is the schema of the models, and reports validate against it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from serving.lag.cli import schema_text
from serving.lag.models import (
    DlqStats,
    FreshnessReport,
    FreshnessStats,
    GroupLag,
    LagReport,
    MonitorReport,
    PartitionLag,
    report_json_schema,
)
from serving.lag.status import Status

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "serving" / "lag" / "schema.json"


def _report(freshness: bool = True) -> MonitorReport:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    part = PartitionLag(
        topic="t",
        partition=0,
        committed_offset=None,
        log_start_offset=0,
        log_end_offset=4,
        lag=4,
        lag_seconds=None,
        status=Status.STALLED,
        reason="x",
    )
    group = GroupLag(
        group="g",
        state="EMPTY",
        members=0,
        status=Status.STALLED,
        status_code=2,
        total_lag=4,
        max_lag_seconds=None,
        partitions=[part],
        errors=[],
    )
    lag = LagReport(sampled_at=now, samples=2, window_s=10, stopped_after_s=20, ok=False, groups=[group])
    stats = FreshnessStats(count=1, p50_s=1.0, p95_s=1.0, p99_s=1.0, max_s=1.0)
    fresh = FreshnessReport(
        topic="f",
        sampled_at=now,
        lookback_s=60,
        bucket_s=60,
        overall=stats,
        windows=[],
        invalid_records=0,
        error=None,
        dlq=DlqStats(topic="d", exists=True, depth=2, rate_per_s=0.1, window_s=20),
    )
    return MonitorReport(lag=lag, freshness=fresh if freshness else None)


def _doc(report: MonitorReport) -> dict[str, Any]:
    return json.loads(report.model_dump_json())


def test_schema_file_is_generated_from_the_models() -> None:
    # Regenerate with: python -c "import json; from serving.lag.models import report_json_schema as s;
    #   open('serving/lag/schema.json','w').write(json.dumps(s(), indent=2) + '\n')"
    assert json.loads(SCHEMA_FILE.read_text()) == report_json_schema()
    assert json.loads(schema_text()) == report_json_schema()


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("freshness", [True, False])
def test_reports_validate(freshness: bool) -> None:
    jsonschema.validate(_doc(_report(freshness)), json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("lag", "groups", 0, "status"), "BROKEN"),
        (("lag", "groups", 0, "partitions", 0, "lag"), -1),
        (("lag", "ok"), "yes"),
        (("schema_version",), 2),
    ],
)
def test_schema_rejects_wrong_values(path: tuple[Any, ...], value: Any) -> None:
    doc = _doc(_report())
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))


def test_schema_rejects_unknown_fields() -> None:
    doc = _doc(_report())
    doc["lag"]["groups"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
