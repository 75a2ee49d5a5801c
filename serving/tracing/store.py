"""Where traces go: the traces topic (keyed by request id, acknowledged off the hot path) and a
view of it that ``GET /v1/traces/{request_id}`` and the feedback check read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.events import EventWriter, TopicView
from streamrag.contracts import TraceRecord


class TraceStore:
    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        capacity: int,
        lookback_s: float,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        # Large, compressed batches: traces are several kB each and nobody waits for them.
        self.writer = EventWriter(
            {**conf, "compression.type": "lz4", "batch.size": 1_000_000},
            topic,
            "streamrag-api-traces",
            on_failure=on_failure,
            linger_ms=500,
        )
        self.view: TopicView[TraceRecord] = TopicView(
            conf, topic, TraceRecord, capacity, lookback_s, write_once=True
        )

    def start(self) -> None:
        self.view.start()

    def record(self, trace: TraceRecord) -> None:
        """Readable here at once; on the topic (for other replicas, and after a restart) once delivered."""
        self.view.put(trace.request_id, trace)
        self.writer.publish(trace.request_id, trace.to_bytes())

    def get(self, request_id: str, tenant: str) -> TraceRecord | None:
        """The trace of ``request_id`` if ``tenant`` made it; None otherwise (unknown or not theirs)."""
        found = self.view.get(request_id)
        return found if found is not None and found.tenant == tenant else None

    def close(self) -> None:
        self.view.stop()
        self.writer.close()
