"""Lag of the real feature pipeline: exactly N while stopped, drained to 0 and OK once it runs, with
freshness percentiles from its feature records."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import Publisher
from serving.lag.monitor import LagMonitor
from serving.lag.settings import LagOptions, LagSettings
from tests.utils.builders import document_event
from tests.utils.pipeline import pipeline_settings, start_harness

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_pipeline_lag_is_exact_then_drains_with_freshness(
    stack: Any, topic_factory: Any, group_factory: Any, tmp_path: Path
) -> None:
    from streams.embed import Embedder

    docs, dlq, features = topic_factory("docs", 2), topic_factory("dlq", 1), topic_factory("features", 1)
    group = group_factory("lag-pipe")
    settings = pipeline_settings([docs], group, tmp_path / "q", "c", dlq, features)
    tenant = f"t{uuid.uuid4().hex[:6]}"
    embedder = Embedder()

    def run_pipeline_until_caught_up() -> None:
        harness = start_harness(settings, embedder)
        try:
            harness.wait(timeout_s=180)
        finally:
            harness.stop()

    with Publisher(stack.kafka, topic=docs) as pub:
        pub.publish_many([document_event(f"first{p}", tenant=tenant, body="Warm-up.") for p in range(4)])
        run_pipeline_until_caught_up()  # the group now exists with committed offsets; then it stops
        n = 12
        pub.publish_many(
            [document_event(f"d{i}", tenant=tenant, body=f"Document {i} body.") for i in range(n)]
        )

    options = LagOptions(groups=[group], discover_groups=False, window_s=2.0, stopped_after_s=3.0,
                         features_topic=features, dlq_topic=dlq)  # fmt: skip
    monitor = LagMonitor(LagSettings(lag=options), groups=[group])
    try:
        # Stopped pipeline: exactly the N new events are lag, and they age.
        before = monitor.sample().groups[0]
        assert before.group == group and before.total_lag == n
        time.sleep(1.5)
        later = monitor.sample().groups[0]
        assert later.total_lag == n
        assert (later.max_lag_seconds or 0) > (before.max_lag_seconds or 0)

        run_pipeline_until_caught_up()
        for _ in range(3):  # the rules judge over a window of samples
            report = monitor.sample()
            time.sleep(0.8)
        drained = report.groups[0]
        assert drained.total_lag == 0
        assert drained.status == "OK", drained
        fresh = monitor.freshness_report()
        assert fresh is not None and fresh.error is None
        assert fresh.overall.count >= n + 4  # one feature record per chunk, >= one chunk per document
        assert (
            fresh.overall.p50_s is not None and 0 <= fresh.overall.p50_s <= (fresh.overall.p99_s or 0) < 600
        )
    finally:
        monitor.close()
