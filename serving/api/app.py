"""The RAG API application factory (``streamrag serve``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CollectorRegistry

from serving.api.routers import answer, documents, feedback, health, search, traces
from serving.api.state import ApiMetrics, ApiState, QueryLog
from serving.events import PublishFailed
from serving.feedback.store import FeedbackStore
from serving.generation.client import Generator, GeneratorUnavailable
from serving.guardrails.policy import Guardrails
from serving.retrieval.rerank import build_reranker
from serving.retrieval.search import QueryEncoder, Retriever
from serving.settings import ApiSettings
from serving.tracing.otel import otlp_configured, tracer_provider
from serving.tracing.store import TraceStore
from streamrag.store import StoreError, VectorStore

log = logging.getLogger("streamrag.serving")


def build_state(
    settings: ApiSettings,
    store: VectorStore | None = None,
    encoder: QueryEncoder | None = None,
    generator_url: str | None = None,
    span_processor: SpanProcessor | None = None,
) -> ApiState:
    """The API's services. ``span_processor`` receives every span (tests: an in-memory exporter);
    without it spans go to OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    owns_store = store is None
    store = store if store is not None else settings.qdrant.store()
    encoder = encoder or QueryEncoder(settings.embedding_model_path, dtype=settings.query_dtype)
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    conf = settings.kafka.librdkafka()
    # Spans only when something receives them (an OTLP endpoint, or a processor handed in): without
    # one they would be built and dropped on every request. The trace record is kept either way.
    wants_spans = settings.tracing and (span_processor is not None or otlp_configured())
    provider = tracer_provider(span_processor) if wants_spans else None

    def undelivered(topic: str) -> None:
        metrics.undelivered.labels(topic).inc()

    state = ApiState(
        settings=settings,
        store=store,
        owns_store=owns_store,
        encoder=encoder,
        retriever=Retriever(
            store,
            settings.qdrant.collection,
            encoder,
            settings.candidates,
            reranker=build_reranker(settings.reranker_path, encoder.model),
            acorn=settings.qdrant.acorn,
            hnsw_ef=settings.qdrant.hnsw_ef,
        ),
        generator=Generator.from_settings(settings, generator_url),
        registry=registry,
        metrics=metrics,
        queries=QueryLog(conf, settings.queries_topic) if settings.queries_topic else None,
        guardrails=Guardrails(settings.guardrails),
        tracer=provider.get_tracer("streamrag.serving") if provider is not None else None,
        traces=TraceStore(
            conf, settings.traces_topic, settings.trace_capacity, settings.trace_lookback_s, undelivered
        )
        if settings.tracing and settings.traces_topic
        else None,
        feedback=FeedbackStore(conf, settings.feedback_topic, registry, settings.trace_lookback_s)
        if settings.feedback_topic
        else None,
    )
    if provider is not None:
        state.extras["tracer_provider"] = provider
    state.retriever.use_versioned_encoders(settings.embedding_model_version, settings.cache_dir / "models")
    try:
        from serving.lag.monitor import LagMonitor
        from serving.lag.settings import LagSettings

        state.extras["lag_monitor"] = LagMonitor(
            LagSettings(), registry=registry, groups=[settings.pipeline_group]
        )
    except ImportError:  # monitoring is optional in a slimmed-down build
        pass
    return state


def create_app(settings: ApiSettings | None = None, state: ApiState | None = None) -> FastAPI:
    """The FastAPI app. Give ``state`` to share services (tests, the embedded all-in-one mode)."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st = app.state.api = state or build_state(settings)
        st.start()
        monitor = st.extras.get("lag_monitor")
        if monitor is not None:
            monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                monitor.stop()
            st.close()

    app = FastAPI(
        title="streamrag",
        version="0.1.0",
        lifespan=lifespan,
        description="Streaming RAG over a live index: hybrid search, answers streamed as Server-Sent Events, "
        "read-your-writes, consumer lag and freshness. Authenticate with the `X-API-Key` header.",
    )
    for module in (health, search, answer, feedback, traces, documents):
        app.include_router(module.router)
    if state is not None:
        app.state.api = state
    _mount_lag(app, state)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line per problem: "body.k: Input should be less than or equal to 50".
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": problems})

    @app.exception_handler(StoreError)
    async def store_down(_request: Request, exc: StoreError) -> JSONResponse:
        # The index is unreachable, restarting or not built yet: a state to retry, not a bug.
        st = getattr(app.state, "api", None)
        if st is not None:
            st.metrics.errors.labels("store_unavailable").inc()
        log.warning("vector store: %s", exc)
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"})

    @app.exception_handler(PublishFailed)
    async def kafka_down(_request: Request, exc: PublishFailed) -> JSONResponse:
        log.warning("kafka: %s", exc)
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "2"})

    @app.exception_handler(GeneratorUnavailable)
    async def generator_down(_request: Request, exc: GeneratorUnavailable) -> JSONResponse:
        # Query rewriting needs the generator too; retrieval without it stays available on /v1/search.
        log.warning("generator: %s", exc)
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "5"})

    return app


def _mount_lag(app: FastAPI, state: ApiState | None) -> None:
    """Mount /v1/lag, /v1/freshness and /dashboard; the monitor is resolved per request."""
    try:
        from serving.lag.router import lag_router
    except ImportError:
        return

    class _LazyMonitor:
        def __getattr__(self, name: str) -> Any:
            return getattr(app.state.api.extras["lag_monitor"], name)

    app.include_router(lag_router(_LazyMonitor()))  # type: ignore[arg-type]
