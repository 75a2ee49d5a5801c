"""Prometheus series and the rich table mirror a report (pure: synthetic reports, a real registry)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from rich.console import Console

from serving.lag.metrics import LagMetrics
from serving.lag.models import DlqStats, GroupLag, LagReport, PartitionLag
from serving.lag.status import STATUS_CODES, Status
from serving.lag.table import render


def _part(topic: str, partition: int, lag: int, lag_seconds: float | None, status: Status) -> PartitionLag:
    return PartitionLag(
        topic=topic,
        partition=partition,
        committed_offset=10,
        log_start_offset=0,
        log_end_offset=10 + lag,
        lag=lag,
        lag_seconds=lag_seconds,
        status=status,
        reason="r",
    )


def _group(name: str, *parts: PartitionLag) -> GroupLag:
    status = max((p.status for p in parts), key=STATUS_CODES.__getitem__, default=Status.OK)
    known = [p.lag_seconds for p in parts if p.lag_seconds is not None]
    return GroupLag(
        group=name,
        state="EMPTY",
        members=0,
        status=status,
        status_code=STATUS_CODES[status],
        total_lag=sum(p.lag for p in parts),
        max_lag_seconds=max(known) if known else None,
        partitions=list(parts),
        errors=[],
    )


def _report(*groups: GroupLag) -> LagReport:
    ok = all(g.status is Status.OK for g in groups)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return LagReport(sampled_at=when, samples=1, window_s=10, stopped_after_s=20, ok=ok, groups=list(groups))


def test_series_follow_the_report_and_vanish_with_it() -> None:
    registry = CollectorRegistry()
    metrics = LagMetrics(registry)
    first = _report(
        _group("g1", _part("t", 0, 5, 2.5, Status.STALLED), _part("t", 1, 0, 0.0, Status.OK)),
        _group("g2", _part("u", 0, 3, None, Status.OK)),
    )
    metrics.update(first)
    value = registry.get_sample_value
    assert value("streamrag_consumergroup_lag", {"group": "g1", "topic": "t", "partition": "0"}) == 5
    assert (
        value("streamrag_consumergroup_lag_seconds", {"group": "g1", "topic": "t", "partition": "0"}) == 2.5
    )
    assert value("streamrag_consumergroup_status", {"group": "g1"}) == 2
    assert value("streamrag_consumergroup_status", {"group": "g2"}) == 0
    assert value("streamrag_consumergroup_lag", {"group": "g2", "topic": "u", "partition": "0"}) == 3
    # An unreadable lag in seconds is absent, not 0.
    assert (
        value("streamrag_consumergroup_lag_seconds", {"group": "g2", "topic": "u", "partition": "0"}) is None
    )
    assert value("streamrag_lag_monitor_last_sample_timestamp") == first.sampled_at.timestamp()

    metrics.update(_report(_group("g1", _part("t", 0, 1, 0.5, Status.OK))))
    assert value("streamrag_consumergroup_lag", {"group": "g1", "topic": "t", "partition": "0"}) == 1
    assert value("streamrag_consumergroup_lag", {"group": "g1", "topic": "t", "partition": "1"}) is None
    assert value("streamrag_consumergroup_lag", {"group": "g2", "topic": "u", "partition": "0"}) is None
    assert value("streamrag_consumergroup_status", {"group": "g2"}) is None
    assert value("streamrag_consumergroup_status", {"group": "g1"}) == 0


def test_freshness_histogram_and_dlq() -> None:
    registry = CollectorRegistry()
    metrics = LagMetrics(registry)
    metrics.observe_freshness([0.3, 4.0, 4.0, 700.0])
    assert registry.get_sample_value("streamrag_freshness_seconds_count") == 4
    assert registry.get_sample_value("streamrag_freshness_seconds_sum") == 708.3
    assert registry.get_sample_value("streamrag_freshness_seconds_bucket", {"le": "5.0"}) == 3
    metrics.update_dlq(DlqStats(topic="dlq", exists=True, depth=7, rate_per_s=0.25, window_s=60))
    assert registry.get_sample_value("streamrag_dlq_depth", {"topic": "dlq"}) == 7
    assert registry.get_sample_value("streamrag_dlq_rate", {"topic": "dlq"}) == 0.25


def test_two_monitors_can_use_two_registries() -> None:
    LagMetrics(CollectorRegistry())
    LagMetrics(CollectorRegistry())  # no "Duplicated timeseries" error: nothing on the global registry


def test_table_shows_partitions_and_group_totals() -> None:
    report = _report(
        _group("pipeline", _part("docs", 0, 5, 2.5, Status.STALLED), _part("docs", 1, 2, 120.0, Status.OK))
    )
    console = Console(width=160, record=True)
    console.print(render(report, None, error="boom"))
    text = console.export_text()
    assert "TOTAL (2 partitions, EMPTY, 0 members)" in text
    total_line = next(line for line in text.splitlines() if "TOTAL" in line)
    assert " 7 " in total_line and "120" in total_line and "STALLED" in total_line
    assert "last sample failed: boom" in text
