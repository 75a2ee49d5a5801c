"""``POST /v1/search`` and ``POST /v1/answer``: hybrid retrieval, then generation streamed as SSE."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from serving.api.deps import StateDep, TenantDep
from serving.api.models import (
    AnswerRequest,
    AnswerResponse,
    Chunk,
    Citation,
    ErrorBody,
    SearchRequest,
    SearchResponse,
)
from serving.api.state import ApiState
from serving.generation.client import GeneratorUnavailable
from serving.generation.prompt import DONT_KNOW, build_prompt
from serving.retrieval.expansion import expand, self_query
from serving.retrieval.search import Hit, SearchResult, dedupe_latest, fuse, relevant
from streamrag.contracts import QueryRecord, utcnow

router = APIRouter(prefix="/v1", tags=["retrieval"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    422: {"model": ErrorBody},
    504: {"model": ErrorBody, "description": "The index did not catch up within freshness.timeout_s."},
}


async def _retrieve(state: ApiState, req: SearchRequest, tenant: str) -> SearchResult:
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
        if not await state.wait_fresh(tenant, f.doc_id, f.min_version, after, f.timeout_s, f.deleted):
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
    if req.self_query if req.self_query is not None else s.self_query:
        t = time.perf_counter()
        extracted = await self_query(state.generator, req.query, s.self_query_fields)
        filters = {**extracted, **filters}  # explicit filters win over extracted ones
        rewrite_ms["self_query_ms"] = (time.perf_counter() - t) * 1000
    if req.expand if req.expand is not None else s.query_expansion:
        t = time.perf_counter()
        rewritten = await expand(state.generator, req.query)
        if rewritten:
            queries.append(rewritten)
        rewrite_ms["expand_ms"] = (time.perf_counter() - t) * 1000
    weight = s.hybrid_weight if req.hybrid_weight is None else req.hybrid_weight
    rerank = s.rerank if req.rerank is None else req.rerank
    results = [
        await asyncio.to_thread(
            state.retriever.search, q, tenant, req.k, filters, weight, req.fusion or s.fusion, rerank
        )
        for q in queries
    ]
    result = results[0]
    if len(results) > 1:  # fuse the question's and the rewrite's rankings; the question's hits stay
        by_id = {h.point_id: h for r in results for h in r.hits}
        fused = fuse([[(h.point_id, h.score) for h in r.hits] for r in results], [1.0] * len(results))
        result.hits = dedupe_latest([by_id[pid] for pid, _ in fused])[: req.k]
    result.timings_ms.update(rewrite_ms)
    result.timings_ms["retrieval_ms"] = (time.perf_counter() - start) * 1000
    return result


def _chunk(h: Hit) -> Chunk:
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


def _log(
    state: ApiState,
    request_id: str,
    tenant: str,
    endpoint: str,
    req: SearchRequest,
    result: SearchResult,
    answer: str | None = None,
    dont_know: bool = False,
) -> None:
    if state.queries is None:
        return
    top = next((h.dense_score for h in result.hits if h.dense_score is not None), None)
    state.queries.publish(
        QueryRecord(
            request_id=request_id,
            tenant=tenant,
            endpoint=endpoint,
            query=req.query,
            filters=dict(req.filters),
            embedding=[round(x, 6) for x in result.query_vector],
            retrieved=[
                {"doc_id": h.doc_id, "version": h.version, "chunk_index": h.chunk_index, "score": h.score}
                for h in result.hits
            ],
            top_score=top,
            answer=answer,
            dont_know=dont_know,
            model_id=state.settings.embedding_model_version,
            timings_ms=result.timings_ms,
            ts=utcnow(),
        )
    )


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(req: SearchRequest, state: StateDep, tenant: TenantDep) -> SearchResponse:
    """Hybrid (dense + sparse) search over the caller's documents, latest versions only."""
    request_id = uuid.uuid4().hex
    result = await _retrieve(state, req, tenant)
    state.metrics.requests.labels("search", "200").inc()
    _log(state, request_id, tenant, "search", req, result)
    return SearchResponse(
        request_id=request_id, results=[_chunk(h) for h in result.hits], timings_ms=result.timings_ms
    )


@router.post(
    "/answer",
    response_model=AnswerResponse,
    responses={
        **ERRORS,
        200: {
            "content": {"text/event-stream": {}, "application/json": {}},
            "description": "SSE events `token`, then `citations`, then `done`; or JSON.",
        },
    },
)
async def answer(req: AnswerRequest, state: StateDep, tenant: TenantDep) -> Any:
    """Retrieve, then generate an answer citing its sources; says it does not know when nothing is relevant.

    With ``stream=true`` (default) the reply is Server-Sent Events: ``event: token`` with
    ``{"text": ...}`` as the model produces it, then ``event: citations`` and ``event: done`` with timings.
    """
    request_id = uuid.uuid4().hex
    result = await _retrieve(state, req, tenant)
    hits = relevant(result.hits, state.settings.min_score)
    s = state.settings
    prompt = build_prompt(req.query, hits, state.encoder.count_tokens, s.context_token_budget)
    citations = [
        Citation(n=i + 1, doc_id=h.doc_id, version=h.version, chunk_index=h.chunk_index, title=h.title)
        for i, h in enumerate(prompt.used)
    ]
    max_new = min(req.max_new_tokens or s.max_new_tokens, s.max_new_tokens_limit)
    timings = dict(result.timings_ms)

    # The first piece is awaited here, before any byte of the reply is sent, so that a generator that
    # is down is a 503 with its message rather than a stream that starts and fails.
    gen_start = time.perf_counter()
    first_piece = DONT_KNOW
    stream: AsyncIterator[str] | None = None
    if prompt.used:
        stream = state.generator.stream(prompt.messages, max_new)
        try:
            first_piece = await anext(stream, "")
        except GeneratorUnavailable as exc:
            state.metrics.errors.labels("generation").inc()
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc

    async def pieces() -> AsyncIterator[str]:
        if first_piece:
            yield first_piece
        if stream is not None:
            async for piece in stream:
                yield piece

    if not req.stream:
        start = gen_start
        text = "".join([p async for p in pieces()])
        timings["generate_ms"] = (time.perf_counter() - start) * 1000
        dont_know = not prompt.used
        _log(state, request_id, tenant, "answer", req, result, text, dont_know)
        state.metrics.requests.labels("answer", "200").inc()
        return AnswerResponse(
            request_id=request_id,
            answer=text,
            citations=citations if prompt.used else [],
            dont_know=dont_know,
            timings_ms=timings,
        )

    async def events() -> AsyncIterator[bytes]:
        start = gen_start
        first: float | None = None
        parts: list[str] = []
        try:
            async for piece in pieces():
                if first is None:
                    first = time.perf_counter() - start
                    state.metrics.ttft.observe(first)
                parts.append(piece)
                yield _sse("token", {"text": piece})
        except Exception as exc:  # the generator failed mid-stream: say so in-band, then stop
            state.metrics.errors.labels("generation").inc()
            yield _sse("error", {"detail": f"generation failed: {exc}"})
            return
        elapsed = time.perf_counter() - start
        timings["generate_ms"] = elapsed * 1000
        timings["ttft_ms"] = (first or elapsed) * 1000
        if parts and elapsed > 0:
            state.metrics.tokens_per_s.observe(len(parts) / elapsed)
        yield _sse("citations", {"citations": [c.model_dump() for c in citations] if prompt.used else []})
        yield _sse("done", {"request_id": request_id, "dont_know": not prompt.used, "timings_ms": timings})
        _log(state, request_id, tenant, "answer", req, result, "".join(parts), not prompt.used)
        state.metrics.requests.labels("answer", "200").inc()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Request-Id": request_id},
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
