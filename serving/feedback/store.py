"""Ratings of answers: each one an event on the feedback topic, acknowledged before the API
answers; a view of the topic keeps the latest rating per request, and from it the current up
and down counts per tenant and generator model (``streamrag_feedback_ratings``)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from serving.events import EventWriter, TopicView
from streamrag.contracts import FeedbackEvent


class FeedbackStore:
    def __init__(
        self, conf: dict[str, Any], topic: str, registry: CollectorRegistry, lookback_s: float
    ) -> None:
        self.writer = EventWriter(conf, topic, "streamrag-api-feedback", linger_ms=0)
        self.gauge = Gauge(
            "streamrag_feedback_ratings",
            "Answers rated up or down (the latest rating of each request), per tenant and generator model.",
            ["tenant", "model", "rating"],
            registry=registry,
        )
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self.view: TopicView[FeedbackEvent] = TopicView(
            conf, topic, FeedbackEvent, capacity=1_000_000, lookback_s=lookback_s, on_change=self._changed
        )

    def start(self) -> None:
        self.view.start()

    def _changed(self, _key: str, old: FeedbackEvent | None, new: FeedbackEvent) -> None:
        with self._lock:
            if old is not None:
                labels = (old.tenant, old.generator_model, old.rating)
                self._counts[labels] -= 1
                self.gauge.labels(*labels).set(self._counts[labels])
            labels = (new.tenant, new.generator_model, new.rating)
            self._counts[labels] += 1
            self.gauge.labels(*labels).set(self._counts[labels])

    async def submit(self, event: FeedbackEvent, timeout_s: float = 10.0) -> None:
        """Durable on the topic when this returns (raises ``PublishFailed`` otherwise)."""
        await self.writer.publish_acked(event.request_id, event.to_bytes(), timeout_s)
        self.view.put(event.request_id, event)

    def stats(self) -> list[dict[str, Any]]:
        """Up/down counts and the up rate per (tenant, model), from the latest ratings."""
        with self._lock:
            counts = dict(self._counts)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for (tenant, model, rating), n in counts.items():
            row = rows.setdefault((tenant, model), {"tenant": tenant, "model": model, "up": 0, "down": 0})
            row[rating] += n
        for row in rows.values():
            total = row["up"] + row["down"]
            row["up_rate"] = row["up"] / total if total else None
        return sorted(rows.values(), key=lambda r: (r["tenant"], r["model"]))

    def close(self) -> None:
        self.view.stop()
        self.writer.close()
