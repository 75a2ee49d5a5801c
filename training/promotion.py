"""Promotion causes re-indexing: a consumer of the models topic that runs the shadow re-index.

When the registry promotes an embedding model it publishes a ``ModelEvent`` (action
``promoted``). This watcher consumes them (group ``streamrag-reindex``), builds the promoted
model's collection beside the live one with :func:`training.reindex.reindex` and switches the
alias when it has caught up; the event's offset is committed only after the switch, so a crash
re-runs it (a re-index into a collection the alias already points at is skipped). Events for
other models, and other actions, are committed and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError

from streamrag.contracts import ModelEvent
from training.registry import ModelRegistry
from training.reindex import ReindexError, reindex
from training.settings import TrainingSettings

log = logging.getLogger("streamrag.training.promotion")

GROUP = "streamrag-reindex"


@dataclass(frozen=True)
class PromotionOutcome:
    version: str
    status: str
    """``reindexed``, ``already-live``, ``skipped`` (not a promotion of our model) or ``invalid``."""
    collection: str | None = None


class PromotionWatcher:
    def __init__(self, settings: TrainingSettings, client: Any, base: Any = None, group: str = GROUP) -> None:
        if not settings.registry.models_topic:
            raise ValueError("registry.models_topic is unset: there are no ModelEvents to watch")
        self.settings = settings
        self.client = client
        self.base = base
        self.registry = ModelRegistry(settings)
        self._consumer = Consumer(
            {**settings.kafka.librdkafka(), "group.id": group, "enable.auto.commit": False,
             "auto.offset.reset": "earliest"}
        )  # fmt: skip
        self._consumer.subscribe([settings.registry.models_topic])

    def handle(self, event: ModelEvent) -> PromotionOutcome:
        if event.action != "promoted" or event.name != self.settings.registry.model_name:
            return PromotionOutcome(event.version, "skipped")
        model = self.registry.model(event.version)
        try:
            result = reindex(self.settings, self.client, model, base=self.base)
        except ReindexError as exc:
            if "already points" in str(exc):
                return PromotionOutcome(event.version, "already-live")
            raise
        return PromotionOutcome(event.version, "reindexed", result.collection)

    def run(self, stop: threading.Event | None = None, max_events: int | None = None,
            timeout_s: float | None = None) -> list[PromotionOutcome]:  # fmt: skip
        """Handle events until ``stop``, ``max_events`` handled, or ``timeout_s`` passed."""
        outcomes: list[PromotionOutcome] = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not (stop and stop.is_set()) and (max_events is None or len(outcomes) < max_events):
                if deadline is not None and time.monotonic() > deadline:
                    break
                msg = self._consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("models topic: %s", err)
                    continue
                try:
                    event = ModelEvent.model_validate_json(msg.value() or b"")
                except ValueError as exc:
                    log.warning("skipping an invalid ModelEvent at offset %s: %s", msg.offset(), exc)
                    outcomes.append(PromotionOutcome("?", "invalid"))
                else:
                    outcomes.append(self.handle(event))
                    log.info("model event %s %s: %s", event.action, event.version, outcomes[-1].status)
                self._consumer.commit(message=msg, asynchronous=False)  # after the switch is done
            return outcomes
        finally:
            self._consumer.close()
