"""Prometheus metrics of the lag monitor, registered on a caller-supplied ``CollectorRegistry``.

* ``streamrag_consumergroup_lag{group,topic,partition}``: messages not yet consumed.
* ``streamrag_consumergroup_lag_seconds{group,topic,partition}``: age of the oldest unconsumed
  message, seconds (0 when caught up).
* ``streamrag_consumergroup_status{group}``: 0 OK, 1 LAGGING, 2 STALLED, 3 STOPPED, 4 REWOUND
  (larger is worse; see :mod:`serving.lag.status`).
* ``streamrag_freshness_seconds`` (histogram): ``indexed_ts - source_ts`` per feature record.
* ``streamrag_dlq_depth{topic}``: messages in the dead-letter topic.
* ``streamrag_dlq_rate{topic}``: messages/s appended to it over the DLQ rate window.
* ``streamrag_lag_monitor_last_sample_timestamp``: epoch seconds of the last successful sample.
* ``streamrag_lag_monitor_errors_total``: samples that failed (for example Kafka unreachable).

Series of partitions or groups that disappear from a sample are removed, so a deleted topic does not
leave a frozen lag behind. A lag in seconds that could not be read is removed rather than set to 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.lag.models import DlqStats, LagReport

FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds; from sub-second streaming up to an hour of backlog."""


class LagMetrics:
    """The monitor's metric families on ``registry``; :meth:`update` mirrors one report into them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        partition_labels = ("group", "topic", "partition")
        self.lag = Gauge(
            "streamrag_consumergroup_lag",
            "Messages not yet consumed by the group (log end offset - committed offset).",
            partition_labels,
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "streamrag_consumergroup_lag_seconds",
            "Age in seconds of the oldest message the group has not consumed (0 when caught up).",
            partition_labels,
            registry=registry,
        )
        self.status = Gauge(
            "streamrag_consumergroup_status",
            "Group status: 0 OK, 1 LAGGING, 2 STALLED, 3 STOPPED, 4 REWOUND.",
            ("group",),
            registry=registry,
        )
        self.freshness = Histogram(
            "streamrag_freshness_seconds",
            "End-to-end freshness: indexed_ts - source_ts of each feature record, seconds.",
            buckets=FRESHNESS_BUCKETS,
            registry=registry,
        )
        self.dlq_depth = Gauge(
            "streamrag_dlq_depth", "Messages in the dead-letter topic.", ("topic",), registry=registry
        )
        self.dlq_rate = Gauge(
            "streamrag_dlq_rate",
            "Messages per second appended to the dead-letter topic over the rate window.",
            ("topic",),
            registry=registry,
        )
        self.last_sample = Gauge(
            "streamrag_lag_monitor_last_sample_timestamp",
            "Epoch seconds of the monitor's last successful sample.",
            registry=registry,
        )
        self.errors = Counter(
            "streamrag_lag_monitor_errors", "Samples that failed, e.g. Kafka unreachable.", registry=registry
        )
        self._partition_series: set[tuple[str, str, str]] = set()
        self._seconds_series: set[tuple[str, str, str]] = set()
        self._group_series: set[str] = set()

    def update(self, report: LagReport) -> None:
        """Set every series from ``report`` and remove the series it no longer has."""
        partitions: set[tuple[str, str, str]] = set()
        seconds: set[tuple[str, str, str]] = set()
        for group in report.groups:
            self.status.labels(group.group).set(group.status_code)
            for part in group.partitions:
                labels = (group.group, part.topic, str(part.partition))
                self.lag.labels(*labels).set(part.lag)
                partitions.add(labels)
                if part.lag_seconds is not None:
                    self.lag_seconds.labels(*labels).set(part.lag_seconds)
                    seconds.add(labels)
        groups = {group.group for group in report.groups}
        _remove(self.lag, self._partition_series - partitions)
        _remove(self.lag_seconds, self._seconds_series - seconds)
        _remove(self.status, {(g,) for g in self._group_series - groups})
        self._partition_series, self._seconds_series, self._group_series = partitions, seconds, groups
        self.last_sample.set(report.sampled_at.timestamp())

    def observe_freshness(self, values: Iterable[float]) -> None:
        for value in values:
            self.freshness.observe(value)

    def update_dlq(self, dlq: DlqStats) -> None:
        self.dlq_depth.labels(dlq.topic).set(dlq.depth)
        self.dlq_rate.labels(dlq.topic).set(dlq.rate_per_s)


def _remove(gauge: Gauge, series: Iterable[tuple[str, ...]]) -> None:
    for labels in series:
        with contextlib.suppress(KeyError):  # already gone
            gauge.remove(*labels)
