"""Publishing :class:`~streamrag.contracts.ModelEvent` records: one per model registry change."""

from __future__ import annotations

import logging
from typing import Any

from streamrag.contracts import ModelEvent

log = logging.getLogger("streamrag.training")


class ModelEventPublisher:
    """Writes each event to ``topic`` keyed by the model name (per-model order) and waits for the ack.

    :meth:`publish` returns only after the broker acknowledged the record (``acks=all``,
    idempotent producer) and raises ``RuntimeError`` when it did not within ``timeout_s``, so a
    registry change is never reported done while its event is lost. ``topic=None`` disables it.
    """

    def __init__(self, kafka_conf: dict[str, Any], topic: str | None, timeout_s: float = 15.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._conf = {
            **kafka_conf,
            "enable.idempotence": True,
            "acks": "all",
            "client.id": "streamrag-training-models",
        }
        self._producer: Any = None

    def publish(self, event: ModelEvent) -> None:
        if self.topic is None:
            return
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer(self._conf)
        errors: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(
            self.topic, key=event.name.encode(), value=event.to_bytes(), on_delivery=delivered
        )
        if self._producer.flush(self.timeout_s) > 0 or errors:
            raise RuntimeError(
                f"ModelEvent {event.action} {event.name}/{event.version} not delivered to "
                f"{self.topic}: {errors or 'timeout'}"
            )
        log.info("published ModelEvent %s %s/%s to %s", event.action, event.name, event.version, self.topic)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None
