"""The API's Kafka side: writers of its event topics and views that tail keyed topics.

- :class:`EventWriter` publishes contract events with an idempotent producer. :meth:`publish`
  never blocks a request (the record is acknowledged off the hot path; a failed delivery is
  logged and counted); :meth:`publish_acked` waits for the broker's acknowledgement, for events
  the API must not answer before they are durable (feedback).
- :class:`TopicView` keeps the latest record per key of a keyed topic in a bounded map, tailing
  the topic from ``lookback_s`` ago in a thread. Every API replica reads the same topic, so a
  trace written by one replica is readable from another, and a restarted API reads back the
  recent ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import BaseModel, ValidationError

log = logging.getLogger("streamrag.serving")

T = TypeVar("T", bound=BaseModel)


class PublishFailed(RuntimeError):
    """The broker did not acknowledge an event in time; the API answers 503 with the message."""


class EventWriter:
    """Idempotent, acks=all producer of one topic's contract events."""

    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        client_id: str,
        on_failure: Callable[[str], None] | None = None,
        linger_ms: int = 20,
    ) -> None:
        self.topic = topic
        self._on_failure = on_failure
        self._producer = Producer(
            {
                **conf,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "client.id": client_id,
            }
        )

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            log.warning("%s: an event was not delivered: %s", self.topic, err)
            if self._on_failure is not None:
                self._on_failure(self.topic)

    def publish(self, key: str, value: bytes) -> None:
        """Queue one event; delivery is confirmed in the background (failures logged and counted)."""
        try:
            self._producer.produce(self.topic, key=key.encode(), value=value, on_delivery=self._delivered)
        except BufferError:
            log.warning("%s: producer buffer full; dropping an event", self.topic)
            if self._on_failure is not None:
                self._on_failure(self.topic)
        self._producer.poll(0)

    def publish_acked_sync(self, key: str, value: bytes, timeout_s: float) -> None:
        """Publish and wait until the broker acknowledged it; raises :class:`PublishFailed`."""
        done = threading.Event()
        errors: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            done.set()

        try:
            self._producer.produce(self.topic, key=key.encode(), value=value, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            raise PublishFailed(f"Kafka refused the event for {self.topic}: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)
        if errors or not done.is_set():
            reason = errors[0] if errors else f"no acknowledgement within {timeout_s:g} s"
            raise PublishFailed(f"Kafka did not take the event for {self.topic}: {reason}; retry later")

    async def publish_acked(self, key: str, value: bytes, timeout_s: float = 10.0) -> None:
        await asyncio.to_thread(self.publish_acked_sync, key, value, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


class TopicView(Generic[T]):
    """The latest ``model`` record per key of ``topic`` (at most ``capacity``, least recent out).

    :meth:`put` adds a record this process wrote at once (read-your-writes inside one replica); the
    tailing thread adds everyone's. ``on_change(key, old, new)`` runs for each change, under the
    view's lock (keep it short).
    """

    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        model: type[T],
        capacity: int = 10_000,
        lookback_s: float = 24 * 3600,
        on_change: Callable[[str, T | None, T], None] | None = None,
        write_once: bool = False,
    ) -> None:
        self.topic = topic
        self.model = model
        self.capacity = capacity
        self.lookback_s = lookback_s
        self._conf = conf
        self._on_change = on_change
        self.write_once = write_once
        """Keys are written once (a trace per request id): a key already here is not parsed again."""
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def get(self, key: str) -> T | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, record: T) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            self._items[key] = record
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            if self._on_change is not None:
                self._on_change(key, old, record)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"view-{self.topic}", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _assign(self, consumer: Consumer) -> bool:
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return False
        since_ms = int((time.time() - self.lookback_s) * 1000)
        wanted = [TopicPartition(self.topic, p, since_ms) for p in meta.partitions]
        start = consumer.offsets_for_times(wanted, timeout=10)
        # offsets_for_times gives -1 where no message is that recent: start at the end there.
        consumer.assign(
            [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -1) for tp in start]
        )
        return True

    def _run(self) -> None:
        # No group: every replica reads the whole topic, and nothing is ever committed.
        consumer = Consumer(
            {
                **self._conf,
                "group.id": f"streamrag-view-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                # Few, large fetches: the view is for other replicas' records, a second late is fine.
                "fetch.wait.max.ms": 1000,
                "fetch.min.bytes": 256 * 1024,
            }
        )
        try:
            while not self._stop.is_set():
                try:
                    if self._assign(consumer):
                        break
                except KafkaException as exc:
                    self.last_error = str(exc)
                self._stop.wait(2.0)
            while not self._stop.is_set():
                # In batches, at most about once a second: a thread woken per message would take
                # the GIL from the requests each time (measured: +10-20% on /v1/search p50).
                for msg in consumer.consume(num_messages=1000, timeout=1.0):
                    self._take(msg)
        finally:
            consumer.close()

    def _take(self, msg: Message) -> None:
        if msg.error() is not None:
            self.last_error = str(msg.error())
            return
        key, value = msg.key(), msg.value()
        if key is None or value is None:
            return
        name = key.decode(errors="replace")
        if self.write_once and self.get(name) is not None:
            return  # this process wrote it (put) before it came back from the topic
        try:
            record = self.model.model_validate_json(value)
        except ValidationError as exc:
            log.warning("%s: skipping a record that is not a %s: %s", self.topic, self.model.__name__, exc)
            return
        self.put(name, record)
