"""The Faust app of the drift consumer: features and queries in, :class:`DriftEvent` out.

Topology (``<id>`` is ``DriftOptions.app_id``, also the consumer group):

1. ``forward_features`` and ``forward_queries`` read the contract topics (raw bytes, parsed with the
   pydantic contracts), turn each record into observations and send them to the internal topic
   ``<id>-observations`` keyed by tenant. The source topics may be keyed by ``tenant/doc_id``;
   re-keying brings every observation of a tenant to one partition, where its windows live.
2. ``judge`` consumes the observations, keeps the windows in the table ``windows`` (memory store,
   changelog ``<id>-windows-changelog``, so a restarted worker restores them from Kafka), runs the
   detector when due and publishes a :class:`DriftEvent` keyed by tenant to ``DriftOptions.drift_topic``.

Guarantees: at-least-once (Faust flushes the producer, i.e. observations, changelog and events,
before it commits offsets). Redelivered observations are dropped by their source offset (see
:mod:`consumers.drift.windows`), so a restart does not count items twice. A record that does not
parse is logged and counted; any error while judging one observation is logged and counted; neither
stops an agent. Faust creates its internal topics (observations, changelog, assignor) through the
admin API; the contract topics must exist.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import faust

from consumers.drift.evaluate import detect, drift_event
from consumers.drift.observations import KeyedObservation, from_feature, from_query
from consumers.drift.settings import DriftSettings
from consumers.drift.windows import DriftWindows
from streamrag.config import KafkaSettings

log = logging.getLogger(__name__)

TABLE_NAME = "windows"

Parser = Callable[[bytes, str, int, int], list[KeyedObservation]]


@dataclass
class DriftStats:
    """Counters since the worker started, logged every ``stats_interval_s``."""

    records: Counter[str] = field(default_factory=Counter)
    """Records read per source topic."""
    invalid: Counter[str] = field(default_factory=Counter)
    """Records (or observations) that did not parse, per topic."""
    evaluations: Counter[str] = field(default_factory=Counter)
    """Detector runs per kind."""
    events: Counter[str] = field(default_factory=Counter)
    """Drift events published per kind."""
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": dict(self.records),
            "invalid": dict(self.invalid),
            "evaluations": dict(self.evaluations),
            "events": dict(self.events),
            "errors": self.errors,
        }


def broker_url(kafka: KafkaSettings) -> str:
    """``host:port,host:port`` -> Faust's ``kafka://host:port;kafka://host:port``."""
    return ";".join(f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",") if host.strip())


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust credentials for the configured security protocol (None for PLAINTEXT)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context() if kafka.security_protocol.endswith("SSL") else None
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username, mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=context,
        password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
    )  # fmt: skip


def create_app(settings: DriftSettings) -> tuple[faust.App, DriftStats]:
    """Build the app (not started) and the counters its agents update."""
    opts = settings.drift
    partitions = settings.kafka.partitions
    datadir = settings.data_dir / "drift"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        opts.app_id,
        broker=broker_url(settings.kafka),
        broker_credentials=broker_credentials(settings.kafka),
        # no RocksDB here: the memory store is rebuilt from the changelog topic on start
        store="memory://",
        topic_replication_factor=settings.kafka.replication_factor,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=opts.session_timeout_s,
        # heartbeats well inside the session (Faust's default is 3 s)
        broker_heartbeat_interval=min(3.0, opts.session_timeout_s / 3),
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
    )
    stats = DriftStats()
    config = opts.window_config()

    features = app.topic(opts.features_topic, key_serializer="raw", value_serializer="raw")
    queries = app.topic(opts.queries_topic, key_serializer="raw", value_serializer="raw")
    observations = app.topic(
        opts.observations_topic(), internal=True, partitions=partitions,
        retention=timedelta(seconds=opts.observations_retention_s), deleting=True,
        key_serializer="raw", value_serializer="raw",
    )  # fmt: skip
    drift_topic = app.topic(opts.drift_topic, key_serializer="raw", value_serializer="raw")
    # co-partitioned with the observations topic: a tenant's windows live with its observations
    windows = app.Table(TABLE_NAME, partitions=partitions, key_type=str, help="Drift windows per tenant.")

    async def on_recovered() -> None:
        log.info("drift windows ready: %d keys in the local table", len(windows))

    windows.on_recover(on_recovered)

    async def forward(stream: Any, parse: Parser) -> None:
        async for event in stream.events():
            msg = event.message
            stats.records[msg.topic] += 1
            try:
                keyed = parse(event.value, msg.topic, msg.partition, msg.offset)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                stats.invalid[msg.topic] += 1
                log.warning("skipping invalid record %s:%d@%d (%d invalid so far): %s",
                            msg.topic, msg.partition, msg.offset, stats.invalid[msg.topic],
                            str(exc).splitlines()[0])  # fmt: skip
                continue
            for item in keyed:
                await observations.send(key=item.key, value=item.to_bytes())

    @app.agent(features, name="forward_features")
    async def forward_features(stream: Any) -> None:
        await forward(stream, from_feature)

    @app.agent(queries, name="forward_queries")
    async def forward_queries(stream: Any) -> None:
        await forward(stream, from_query)

    async def judge_one(item: KeyedObservation) -> None:
        win = DriftWindows(windows, item.tenant, item.scope, config)
        pair = win.add(item.observation)
        if pair is None:
            return
        stats.evaluations[item.kind] += 1
        # the permutation test is CPU work: keep the event loop (heartbeats, fetches) responsive
        result = await asyncio.to_thread(detect, item.kind, pair, opts)
        log.debug("evaluated %s/%s: score=%.5f threshold=%.5f drift=%s",
                  item.tenant, item.scope, result.score, result.threshold, result.drift)  # fmt: skip
        if not result.drift:
            return
        event = drift_event(item.tenant, item.kind, item.model_id, pair, result)
        await drift_topic.send(key=item.key, value=event.to_bytes())
        win.reset_after_drift()
        stats.events[item.kind] += 1
        log.info("drift %s tenant=%s kind=%s score=%.5f threshold=%.5f offsets=%s",
                 event.event_id, event.tenant, event.kind, event.score, event.threshold,
                 event.feature_offsets)  # fmt: skip

    @app.agent(observations, name="judge")
    async def judge(stream: Any) -> None:
        async for event in stream.events():
            try:
                item = KeyedObservation.from_bytes(event.value)
            except (ValueError, KeyError, TypeError) as exc:
                stats.invalid[event.message.topic] += 1
                log.warning("skipping malformed observation: %r", exc)
                continue
            try:
                await judge_one(item)
            except Exception:
                # e.g. embeddings of two dimensions under one model id: one bad item must not
                # stop drift detection for every tenant of the partition
                stats.errors += 1
                log.exception("failed to judge an observation of %s/%s", item.tenant, item.scope)

    @app.timer(interval=opts.stats_interval_s)
    async def log_stats() -> None:
        log.info("drift stats: %s", stats.as_dict())

    return app, stats
