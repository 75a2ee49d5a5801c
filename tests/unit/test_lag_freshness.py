"""Pure parts of freshness, DLQ and offset arithmetic: percentiles, buckets, record parsing, lag."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.lag.dlq import appended_since
from serving.lag.freshness import bucketize, percentile, record_freshness, summarize
from serving.lag.offsets import first_unread, partition_lag
from streamrag.contracts import FeatureRecord


def test_percentiles_of_one_to_hundred() -> None:
    stats = summarize([float(v) for v in range(100, 0, -1)])  # any order
    assert stats.count == 100
    assert stats.p50_s == pytest.approx(50.5)
    assert stats.p95_s == pytest.approx(95.05)
    assert stats.p99_s == pytest.approx(99.01)
    assert stats.max_s == 100.0


def test_summary_of_nothing_is_nulls() -> None:
    stats = summarize([])
    assert (stats.count, stats.p50_s, stats.p95_s, stats.p99_s, stats.max_s) == (0, None, None, None, None)


def test_percentile_of_a_single_value() -> None:
    assert percentile([3.5], 99) == 3.5


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(0, 100),
)
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    ordered = sorted(values)
    assert percentile(ordered, q) == pytest.approx(float(np.percentile(ordered, q)), rel=1e-9, abs=1e-6)


def test_buckets_are_aligned_and_cover_the_lookback() -> None:
    now = 10_030.0  # mid-bucket; the lookback starts at 9_850, inside the bucket [9_840, 9_900)
    points = [(9_800.0, 99.0), (9_939.0, 1.0), (9_990.0, 2.0), (9_991.0, 4.0), (10_025.0, 8.0)]
    windows = bucketize(points, now=now, lookback_s=180, bucket_s=60)
    assert [w.start.timestamp() for w in windows] == [9_840.0, 9_900.0, 9_960.0, 10_020.0]
    assert all(w.end.timestamp() - w.start.timestamp() == 60 for w in windows)
    assert [w.count for w in windows] == [0, 1, 2, 1]  # 9_800 is before the lookback
    assert windows[0].p50_s is None
    assert windows[2].p50_s == pytest.approx(3.0)
    assert windows[3].max_s == 8.0


def test_points_outside_the_lookback_are_ignored() -> None:
    windows = bucketize(
        [(0.0, 1.0), (10_000.0, 2.0), (20_000.0, 3.0)], now=10_030.0, lookback_s=60, bucket_s=30
    )
    assert sum(w.count for w in windows) == 1


def _feature(source: datetime, indexed: datetime) -> bytes:
    record = FeatureRecord(
        tenant="acme",
        doc_id="d1",
        version=1,
        chunk_index=0,
        model_id="m",
        embedding=[0.1, 0.2],
        source_ts=source,
        indexed_ts=indexed,
        source_topic="streamrag.documents",
        source_partition=0,
        source_offset=3,
    )
    return record.to_bytes()


def test_freshness_of_a_feature_record() -> None:
    source = datetime(2026, 1, 1, tzinfo=UTC)
    assert record_freshness(_feature(source, source + timedelta(seconds=2.5))) == pytest.approx(2.5)


def test_freshness_accepts_offsets_and_z_suffix() -> None:
    doc = {"source_ts": "2026-01-01T00:00:00Z", "indexed_ts": "2026-01-01T01:00:03+01:00"}
    assert record_freshness(json.dumps(doc).encode()) == pytest.approx(3.0)


def test_timestamp_text_inside_another_string_is_not_mistaken_for_the_field() -> None:
    doc = {
        "doc_id": '"source_ts":"2000-01-01T00:00:00Z"',
        "source_ts": "2026-01-01T00:00:00Z",
        "indexed_ts": "2026-01-01T00:00:02Z",
    }
    assert record_freshness(json.dumps(doc).encode()) == pytest.approx(2.0)


def test_escaped_timestamps_fall_back_to_full_json_decoding() -> None:
    raw = b'{"source_ts": "2026-01-01T00:00:00\\u002b00:00", "indexed_ts": "2026-01-01T00:00:04Z"}'
    assert json.loads(raw)["source_ts"] == "2026-01-01T00:00:00+00:00"
    assert record_freshness(raw) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[1, 2]",
        b'{"source_ts": "2026-01-01T00:00:00Z"}',
        b'{"source_ts": "yesterday", "indexed_ts": "2026-01-01T00:00:00Z"}',
        b'{"source_ts": "2026-01-01T00:00:00", "indexed_ts": "2026-01-01T00:00:01"}',  # naive
    ],
)
def test_records_without_usable_timestamps_are_invalid(value: bytes | None) -> None:
    assert record_freshness(value) is None


def test_lag_is_end_minus_committed() -> None:
    assert partition_lag(committed=7, low=0, high=10) == 3
    assert partition_lag(committed=10, low=0, high=10) == 0


def test_lag_without_commit_is_everything_in_the_log() -> None:
    assert partition_lag(committed=None, low=4, high=10) == 6


def test_lag_is_never_negative() -> None:
    assert partition_lag(committed=15, low=0, high=10) == 0


def test_first_unread_skips_what_retention_deleted() -> None:
    assert first_unread(None, 4) == 4
    assert first_unread(2, 4) == 4
    assert first_unread(9, 4) == 9


def test_dlq_appended_since() -> None:
    assert appended_since(first_in_window=7, high=10) == 3
    assert appended_since(first_in_window=-1, high=10) == 0
