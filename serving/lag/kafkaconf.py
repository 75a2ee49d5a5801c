"""librdkafka configuration shared by the monitor's Kafka clients."""

from __future__ import annotations

import logging
from typing import Any

from streamrag.config import KafkaSettings

KAFKA_LOG = logging.getLogger("serving.lag.kafka")
"""librdkafka's own log lines (connection failures, retries) go here rather than to stderr, so a
command that reports "cannot reach Kafka" once is not buried under a retry per 50 ms."""


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """``kafka.librdkafka(**extra)`` with librdkafka's logs routed to :data:`KAFKA_LOG`."""
    return kafka.librdkafka(logger=KAFKA_LOG, **extra)
