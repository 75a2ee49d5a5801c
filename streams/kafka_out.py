"""Producing the pipeline's side outputs (dead letters, feature records) durably.

A step that writes to a topic returns only when the broker has acknowledged every record
(idempotent producer, ``acks=all``), because the batch's offset is committed right after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer


class ProduceError(RuntimeError):
    """A record was not acknowledged; the batch must not be committed."""


class TopicWriter:
    def __init__(self, conf: dict[str, Any], topic: str, client_id: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                **conf,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "client.id": client_id,
            }
        )

    def write(self, records: Sequence[tuple[bytes | None, bytes]], timeout_s: float = 30.0) -> int:
        """Produce ``(key, value)`` records in order and wait for all acknowledgements."""
        if not records:
            return 0
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for key, value in records:
            while True:
                try:
                    self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)
        if self._producer.flush(timeout_s):
            raise ProduceError(f"{self.topic}: records not acknowledged within {timeout_s}s")
        if errors:
            raise ProduceError(f"{self.topic}: {len(errors)} record(s) failed: {errors[0]}")
        return len(records)

    def close(self) -> None:
        self._producer.flush(30)
