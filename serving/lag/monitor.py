"""``LagMonitor``: samples consumer offsets, freshness and the DLQ periodically; keeps the history.

One sample reads, for every monitored group, the offsets of :mod:`serving.lag.offsets`, appends them
to a per-partition history, judges each partition with :mod:`serving.lag.status` and publishes a
:class:`~serving.lag.models.LagReport`; it also reads the new feature records (freshness) and the
dead-letter topic. Reports and Prometheus metrics are updated together.

Monitored groups: the configured ones (the project's groups by default) and those passed to
:meth:`LagMonitor.report` or the constructor, always; plus, with ``discover_groups``, every other
group on the cluster that has committed offsets.

Threads: :meth:`start` runs the sampling in a daemon thread every ``interval_s`` seconds;
:meth:`sample` can also be called directly (tests, the CLI). Sampling is serialised by a lock, and
the reports are immutable, so readers (API handlers) never wait for Kafka except to sample a group
nobody monitored before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType

from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

from serving.lag.dlq import dlq_stats
from serving.lag.freshness import FreshnessTracker, bucketize, summarize
from serving.lag.metrics import LagMetrics
from serving.lag.models import (
    DlqStats,
    FreshnessReport,
    GroupHistory,
    GroupLag,
    LagHistory,
    LagPoint,
    LagReport,
    PartitionLag,
)
from serving.lag.offsets import GroupOffsets, KafkaUnavailable, OffsetReader, PartitionOffsets
from serving.lag.settings import LagSettings
from serving.lag.status import (
    STATUS_CODES,
    OffsetSample,
    Status,
    StatusRules,
    Verdict,
    evaluate_partition,
    worst,
)
from streamrag.contracts import Groups

log = logging.getLogger(__name__)

HistoryKey = tuple[str, str, int]
"""(group, topic, partition)."""

MAX_REQUESTED_GROUPS = 32
"""Groups added by requests are kept in a bounded LRU so arbitrary names cannot grow it forever."""


class LagMonitor:
    """Periodic sampler of consumer lag, freshness and DLQ with Prometheus metrics on ``registry``.

    ``groups`` adds groups to the configured ones. ``freshness=False`` skips the features topic and
    the DLQ (the CLI's ``--no-freshness``). ``clock`` returns epoch seconds.
    """

    def __init__(
        self,
        settings: LagSettings | None = None,
        registry: CollectorRegistry | None = None,
        groups: Sequence[str] = (),
        freshness: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or LagSettings()
        self.options = self.settings.lag
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rules = StatusRules(window_s=self.options.window_s, stopped_after_s=self.options.stopped_after_s)
        self._clock = clock
        # The pipeline's group is one setting of the core: the default list names it by that setting.
        configured = [
            self.settings.pipeline_group if g == Groups.PIPELINE else g for g in self.options.groups
        ]
        self._fixed_groups = list(dict.fromkeys([*configured, *groups]))
        self._requested: OrderedDict[str, None] = OrderedDict()
        self._reader = OffsetReader(self.settings.kafka, self.options.request_timeout_s, clock)
        self._tracker = (
            FreshnessTracker(
                self.settings.kafka,
                self._reader,
                self.options.features_topic,
                self.options.freshness_lookback_s,
                self.options.request_timeout_s,
                clock,
            )
            if freshness
            else None
        )
        self._metrics = LagMetrics(self.registry)
        self._history: dict[HistoryKey, deque[OffsetSample]] = {}
        self._group_history: dict[str, deque[LagPoint]] = {}
        self._report: LagReport | None = None
        self._freshness: FreshnessReport | None = None
        self.last_error: str | None = None
        """Why the last sample failed; None after a successful one."""
        # _sample_lock serialises sampling (the Kafka clients and the history are single-threaded);
        # _state_lock guards what readers copy out, so they never wait for a sample's Kafka I/O.
        self._sample_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Sample every ``interval_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lag-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the sampling thread (waits up to ``timeout_s`` for a sample in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        """Stop sampling and close the Kafka consumer."""
        self.stop()
        if self._tracker is not None:
            with self._sample_lock:
                self._tracker.close()
                self._tracker = None

    def __enter__(self) -> LagMonitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- reading -----------------------------------------------------------------------------------

    def report(self, group: str | None = None) -> LagReport:
        """The latest report (sampling first if there is none), or only ``group`` from it.

        A group not monitored yet is sampled right away and monitored from then on.
        """
        current = self._report
        if current is None or (group is not None and group not in {g.group for g in current.groups}):
            if group is not None:
                self._remember_request(group)
            current = self.sample()
        if group is None:
            return current
        return current.model_copy(update={"groups": [g for g in current.groups if g.group == group]})

    def latest(self) -> LagReport | None:
        """The last sample taken, without sampling (None before the first): cheap enough for every request."""
        return self._report

    def freshness_report(self) -> FreshnessReport | None:
        """The latest freshness report; None when freshness is off or nothing was sampled yet."""
        return self._freshness

    def history(self, group: str | None = None) -> LagHistory:
        """Per-group totals of the last ``history_s`` seconds, oldest first."""
        with self._state_lock:
            items = [(name, list(points)) for name, points in self._group_history.items()]
        return LagHistory(
            groups=[
                GroupHistory(group=name, points=points) for name, points in items if group in (None, name)
            ]
        )

    # --- sampling ----------------------------------------------------------------------------------

    def sample(self) -> LagReport:
        """Take one sample now, update the history and metrics, and return the new report.

        Raises :class:`KafkaUnavailable` when the cluster cannot be reached (the previous report is
        kept). A freshness or DLQ failure does not fail the sample; it is reported in the freshness
        report's ``error``.
        """
        with self._sample_lock:
            try:
                offsets = self._reader.read(self._groups())
            except (KafkaUnavailable, KafkaException) as exc:
                self._metrics.errors.inc()
                self.last_error = str(exc)
                raise KafkaUnavailable(str(exc)) from exc
            report = self._record(offsets)
            self._metrics.update(report)
            self._report = report
            if self._tracker is not None:
                self._freshness = self._sample_freshness(self._tracker)
            self.last_error = None
            return report

    def _groups(self) -> list[str]:
        with self._state_lock:
            groups = [*self._fixed_groups, *self._requested]
        if self.options.discover_groups:
            groups += self._reader.discover_groups()
        return list(dict.fromkeys(groups))

    def _remember_request(self, group: str) -> None:
        with self._state_lock:
            if group in self._fixed_groups:
                return
            self._requested[group] = None
            self._requested.move_to_end(group)
            while len(self._requested) > MAX_REQUESTED_GROUPS:
                self._requested.popitem(last=False)

    def _record(self, offsets: list[GroupOffsets]) -> LagReport:
        """Append the sample to the history and judge every partition (caller holds the lock)."""
        with self._state_lock:
            keep = set(self._fixed_groups) | set(self._requested)
        seen: set[HistoryKey] = set()
        groups: list[GroupLag] = []
        longest = 1
        sampled_at = max((p.sampled_at for g in offsets for p in g.partitions), default=self._clock())
        for group in offsets:
            if not group.partitions and not group.errors and group.group not in keep:
                continue  # a discovered group with nothing committed: noise (e.g. a console consumer)
            partitions: list[PartitionLag] = []
            for part in group.partitions:
                key = (group.group, part.topic, part.partition)
                seen.add(key)
                history = self._history.setdefault(key, deque())
                history.append(OffsetSample(part.sampled_at, part.committed, part.lag))
                self._prune(history)
                longest = max(longest, len(history))
                partitions.append(_partition_lag(part, evaluate_partition(history, self.rules)))
            groups.append(_group_lag(group, partitions))
        for key in set(self._history) - seen:
            del self._history[key]  # the partition left the group (topic deleted, offsets expired)
        self._append_group_history(groups, sampled_at)
        return LagReport(
            sampled_at=datetime.fromtimestamp(sampled_at, UTC),
            samples=longest,
            window_s=self.rules.window_s,
            stopped_after_s=self.rules.stopped_after_s,
            ok=all(g.status is Status.OK for g in groups),
            groups=groups,
        )

    def _prune(self, history: deque[OffsetSample]) -> None:
        """Keep the samples the rules can use: back to max(window, stopped-after), plus one older.

        The one sample at or before the cutoff makes the kept span reach the full length, so a
        partition stuck for exactly ``stopped_after_s`` is seen as such.
        """
        cutoff = history[-1].ts - max(self.rules.window_s, self.rules.stopped_after_s)
        while len(history) >= 2 and history[1].ts <= cutoff:
            history.popleft()

    def _append_group_history(self, groups: list[GroupLag], ts: float) -> None:
        when = datetime.fromtimestamp(ts, UTC)
        names = {g.group for g in groups}
        with self._state_lock:
            for gone in set(self._group_history) - names:
                del self._group_history[gone]
            for group in groups:
                points = self._group_history.setdefault(group.group, deque())
                points.append(
                    LagPoint(
                        ts=when,
                        total_lag=group.total_lag,
                        max_lag_seconds=group.max_lag_seconds,
                        status=group.status,
                    )
                )
                while points and points[0].ts.timestamp() < ts - self.options.history_s:
                    points.popleft()

    def _sample_freshness(self, tracker: FreshnessTracker) -> FreshnessReport:
        opts = self.options
        error: str | None = None
        try:
            self._metrics.observe_freshness(tracker.poll())
            error = tracker.error
        except (KafkaUnavailable, KafkaException) as exc:
            error = f"cannot read {opts.features_topic}: {exc}"
        now = self._clock()
        try:
            dlq = dlq_stats(self._reader, opts.dlq_topic, opts.dlq_rate_window_s, now)
            self._metrics.update_dlq(dlq)
        except (KafkaUnavailable, KafkaException) as exc:
            dlq = DlqStats(
                topic=opts.dlq_topic, exists=False, depth=0, rate_per_s=0.0, window_s=opts.dlq_rate_window_s
            )
            error = error or f"cannot read {opts.dlq_topic}: {exc}"
        points = tracker.points()
        return FreshnessReport(
            topic=opts.features_topic,
            sampled_at=datetime.fromtimestamp(now, UTC),
            lookback_s=opts.freshness_lookback_s,
            bucket_s=opts.freshness_bucket_s,
            overall=summarize([value for _, value in points]),
            windows=bucketize(points, now, opts.freshness_lookback_s, opts.freshness_bucket_s),
            invalid_records=tracker.invalid_records,
            error=error,
            dlq=dlq,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except KafkaUnavailable as exc:
                log.warning("lag sample failed: %s", exc)
            except Exception:  # keep the thread alive: one bad sample must not end monitoring
                self._metrics.errors.inc()
                log.exception("lag sample failed")
            self._stop.wait(max(0.0, self.options.interval_s - (time.monotonic() - started)))


def _partition_lag(part: PartitionOffsets, verdict: Verdict) -> PartitionLag:
    return PartitionLag(
        topic=part.topic,
        partition=part.partition,
        committed_offset=part.committed,
        log_start_offset=part.low,
        log_end_offset=part.high,
        lag=part.lag,
        lag_seconds=part.lag_seconds,
        status=verdict.status,
        reason=verdict.reason,
    )


def _group_lag(group: GroupOffsets, partitions: list[PartitionLag]) -> GroupLag:
    status = worst(p.status for p in partitions)
    known = [p.lag_seconds for p in partitions if p.lag_seconds is not None]
    return GroupLag(
        group=group.group,
        state=group.state,
        members=group.members,
        status=status,
        status_code=STATUS_CODES[status],
        total_lag=sum(p.lag for p in partitions),
        max_lag_seconds=max(known) if known else None,
        partitions=partitions,
        errors=list(group.errors),
    )
