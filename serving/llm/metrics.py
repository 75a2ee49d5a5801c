"""Prometheus metrics of the LLM server, in a registry per app (so several apps can live in a process).

Names start with ``streamrag_llm_``. Times are in seconds, rates in tokens per second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Time to first token on 2 CPU cores ranges from about 0.1 s (idle) to seconds (queued behind others).
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0)


class LLMMetrics:
    """Every metric the server exports; all methods are thread-safe (generation threads call them)."""

    def __init__(self, capacity: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "streamrag_llm_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "streamrag_llm_time_to_first_token_seconds",
            "From a generation request's arrival (queueing included) to its first token.",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "streamrag_llm_queue_wait_seconds",
            "Time a request waited for a free slot.",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.decode_rate = Histogram(
            "streamrag_llm_tokens_per_second",
            "Per generation: tokens after the first divided by the time after the first token.",
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter(
            "streamrag_llm_generated_tokens", "Tokens generated, over all requests.", registry=r
        )
        self.prompt_tokens = Counter("streamrag_llm_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generations = Counter(
            "streamrag_llm_generations",
            "Finished generations by finish reason (cancelled: the client went away).",
            ["finish_reason"],
            registry=r,
        )
        self.active_slots = Gauge("streamrag_llm_active_slots", "Generations running now.", registry=r)
        self.waiting = Gauge("streamrag_llm_waiting_requests", "Requests waiting for a slot.", registry=r)
        self.slots = Gauge("streamrag_llm_slots", "Generations that may run at once.", registry=r)
        self.slots.set(capacity)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class RequestCounter:
    """ASGI middleware counting responses by route and status code.

    Plain ASGI rather than BaseHTTPMiddleware, because the latter wraps streaming responses and gets in
    the way of noticing a client that disconnects. Unknown paths count as "other" to bound the labels.
    """

    def __init__(self, app: ASGIApp, metrics: LLMMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
