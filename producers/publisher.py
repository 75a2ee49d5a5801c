"""The typed publisher of :class:`~streamrag.contracts.DocumentEvent` to the documents topic.

Contract: :meth:`Publisher.publish` returns only once the broker has acknowledged the event
(``acks=all``, idempotent producer), and tells where it landed. Events are keyed by
``tenant/doc_id``, so one document's events stay in order on one partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streamrag.config import KafkaSettings
from streamrag.contracts import DocumentEvent, Topics


class PublishError(RuntimeError):
    """The broker did not acknowledge an event."""


@dataclass(frozen=True)
class Delivery:
    """Where an acknowledged event landed; ``offset`` lets a reader wait for it (read-your-writes)."""

    key: str
    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "topic": self.topic, "partition": self.partition, "offset": self.offset}


class Publisher:
    """Publish document events; use as a context manager so pending events are flushed on exit."""

    def __init__(self, kafka: KafkaSettings, topic: str = Topics.DOCUMENTS, **producer_conf: Any) -> None:
        self.topic = topic
        self._producer = Producer(
            kafka.librdkafka(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "client.id": "streamrag-publisher",
                    **producer_conf,
                }
            )
        )

    def publish(self, event: DocumentEvent, timeout_s: float = 30.0) -> Delivery:
        """Send one event and wait for its acknowledgement."""
        return self.publish_many([event], timeout_s=timeout_s)[0]

    def publish_many(self, events: Iterable[DocumentEvent], timeout_s: float = 60.0) -> list[Delivery]:
        """Send events in order and wait until every one is acknowledged (or raise PublishError)."""
        results: list[Delivery | KafkaError | None] = []

        def on_delivery(slot: int, err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                results[slot] = err
            else:
                results[slot] = Delivery(
                    (msg.key() or b"").decode(),
                    str(msg.topic()),
                    int(msg.partition() or 0),
                    int(msg.offset() or 0),
                )

        for event in events:
            slot = len(results)
            results.append(None)

            def callback(err: KafkaError | None, msg: Message, slot: int = slot) -> None:
                on_delivery(slot, err, msg)

            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        key=event.key.encode(),
                        value=event.to_bytes(),
                        on_delivery=callback,
                    )
                    break
                except BufferError:  # local queue full: serve callbacks, then retry
                    self._producer.poll(0.1)
            self._producer.poll(0)
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise PublishError(f"{remaining} event(s) not acknowledged within {timeout_s}s")
        failed = [r for r in results if not isinstance(r, Delivery)]
        if failed:
            raise PublishError(f"{len(failed)} event(s) failed: {failed[0]}")
        return [r for r in results if isinstance(r, Delivery)]

    def close(self) -> None:
        self._producer.flush(30)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
