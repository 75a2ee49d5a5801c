"""The steps ``/v1/search`` and ``/v1/answer`` share: the freshness wait, rewrites, retrieval, the
query log and the request trace."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import HTTPException, status
from opentelemetry.trace import NoOpTracer

from serving.api.models import Chunk, ErrorBody, SearchRequest
from serving.api.state import ApiState
from serving.retrieval.expansion import expand, self_query
from serving.retrieval.search import Hit, SearchResult, dedupe_latest, fuse, hybrid_weight_for
from serving.settings import ApiSettings
from serving.tracing.recorder import RequestTrace
from streamrag.contracts import QueryRecord, utcnow

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "The index, Kafka or the generator is unavailable; retry."},
    504: {"model": ErrorBody, "description": "The index did not catch up within freshness.timeout_s."},
}
_NO_TRACER = NoOpTracer()


def start_trace(
    state: ApiState, request_id: str, tenant: str, endpoint: str, req: SearchRequest
) -> RequestTrace:
    """The request's trace: a record when tracing is on, spans when an exporter receives them."""
    return RequestTrace(
        state.tracer or _NO_TRACER,
        request_id,
        tenant,
        endpoint,
        req.query,
        req.filters,
        enabled=state.settings.tracing,
    )


async def finish_trace(state: ApiState, trace: RequestTrace, error: str | None = None) -> None:
    """End the trace and hand its record to the trace store (published in the background)."""
    if not trace.enabled:
        return
    if trace.fields["endpoint"] == "answer":  # search never reaches the generator: do not ask it
        trace.fields["models"]["generator"] = await state.generator.model_id()
    offsets, sampled_at = state.index_position()
    trace.index_position(offsets, sampled_at)
    record = trace.finish(error)
    if state.traces is not None:
        state.traces.record(record)


def _self_query(req: SearchRequest, s: ApiSettings) -> bool:
    return req.self_query if req.self_query is not None else s.self_query


def _expand(req: SearchRequest, s: ApiSettings) -> bool:
    return req.expand if req.expand is not None else s.query_expansion


def wants_rewrites(req: SearchRequest, s: ApiSettings) -> bool:
    """Whether the request's query goes to the generator to be rewritten (expansion, self-query)."""
    return _self_query(req, s) or _expand(req, s)


async def retrieve(
    state: ApiState, req: SearchRequest, tenant: str, trace: RequestTrace, rewrites_allowed: bool = True
) -> SearchResult:
    """Wait for freshness if asked, rewrite if enabled (and allowed), then hybrid retrieval."""
    s = state.settings
    if req.freshness is not None:
        f = req.freshness
        if f.after is not None and f.after.topic not in s.source_topics:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"freshness.after.topic: {f.after.topic!r} is not indexed by the pipeline; "
                f"expected one of {s.source_topics}",
            )
        after = (f.after.topic, f.after.partition, f.after.offset) if f.after else None
        with trace.step("freshness_wait"):
            fresh = await state.wait_fresh(tenant, f.doc_id, f.min_version, after, f.timeout_s, f.deleted)
        if not fresh:
            state.metrics.errors.labels("freshness_timeout").inc()
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT,
                f"the index did not catch up within {f.timeout_s}s; retry later "
                "(answering now could return stale data)",
            )
    start = time.perf_counter()
    filters: dict[str, Any] = dict(req.filters)
    queries = [req.query]
    rewrite_ms: dict[str, float] = {}
    if rewrites_allowed and _self_query(req, s):
        t = time.perf_counter()
        with trace.step("self_query"):
            extracted = await self_query(state.generator, req.query, s.self_query_fields)
        filters = {**extracted, **filters}  # explicit filters win over extracted ones
        trace.fields["rewrites"]["self_query"] = extracted
        rewrite_ms["self_query_ms"] = (time.perf_counter() - t) * 1000
    if rewrites_allowed and _expand(req, s):
        t = time.perf_counter()
        with trace.step("expand"):
            rewritten = await expand(state.generator, req.query)
        if rewritten:
            queries.append(rewritten)
        trace.fields["rewrites"]["expansion"] = rewritten
        rewrite_ms["expand_ms"] = (time.perf_counter() - t) * 1000
    rerank = s.rerank if req.rerank is None else req.rerank
    fusion = req.fusion or s.fusion
    results = []
    for q in queries:
        weight = (
            hybrid_weight_for(q, s.hybrid_weight, s.question_hybrid_weight, s.identifier_hybrid_weight)
            if req.hybrid_weight is None
            else req.hybrid_weight
        )
        with trace.step("retrieve", fusion=fusion, hybrid_weight=weight, rerank=rerank) as span:
            found = await asyncio.to_thread(
                state.retriever.search, q, tenant, req.k, filters, weight, fusion, rerank
            )
            trace.substeps(span, found.steps)
        results.append(found)
    result = results[0]
    if len(results) > 1:  # fuse the question's and the rewrite's rankings; the question's hits stay
        by_id = {h.point_id: h for r in results for h in r.hits}
        fused = fuse([[(h.point_id, h.score) for h in r.hits] for r in results], [1.0] * len(results))
        result.hits = dedupe_latest([by_id[pid] for pid, _ in fused])[: req.k]
    result.timings_ms.update(rewrite_ms)
    result.timings_ms["retrieval_ms"] = (time.perf_counter() - start) * 1000
    trace.retrieval(result.candidates, result.hits)
    trace.set(collection=result.collection, filters=filters)
    trace.fields["models"]["embedding"] = state.embedding_version(result.collection)
    return result


def to_chunk(h: Hit) -> Chunk:
    return Chunk(
        doc_id=h.doc_id,
        version=h.version,
        chunk_index=h.chunk_index,
        text=h.text,
        title=h.title,
        score=h.score,
        source_ts=h.source_ts,
        indexed_ts=h.indexed_ts,
        metadata=h.metadata,
    )


def log_query(
    state: ApiState,
    request_id: str,
    tenant: str,
    endpoint: str,
    req: SearchRequest,
    result: SearchResult | None,
    answer: str | None = None,
    dont_know: bool = False,
) -> None:
    if state.queries is None:
        return
    hits = result.hits if result is not None else []
    top = next((h.dense_score for h in hits if h.dense_score is not None), None)
    state.queries.publish(
        QueryRecord(
            request_id=request_id,
            tenant=tenant,
            endpoint=endpoint,
            query=req.query,
            filters=dict(req.filters),
            embedding=[round(x, 6) for x in result.query_vector] if result is not None else None,
            retrieved=[
                {"doc_id": h.doc_id, "version": h.version, "chunk_index": h.chunk_index, "score": h.score}
                for h in hits
            ],
            top_score=top,
            answer=answer,
            dont_know=dont_know,
            model_id=state.settings.embedding_model_version,
            timings_ms=result.timings_ms if result is not None else {},
            ts=utcnow(),
        )
    )
