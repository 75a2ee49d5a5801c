"""``POST /v1/search``: hybrid retrieval over the caller's documents."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from serving.api.deps import StateDep, TenantDep
from serving.api.flow import ERRORS, finish_trace, log_query, retrieve, start_trace, to_chunk, wants_rewrites
from serving.api.models import SearchRequest, SearchResponse
from serving.api.state import record_decisions

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(req: SearchRequest, state: StateDep, tenant: TenantDep) -> SearchResponse:
    """Hybrid (dense + sparse) search over the caller's documents, latest versions only.

    The response's ``request_id`` names the request's trace (``GET /v1/traces/{request_id}``).
    """
    request_id = uuid.uuid4().hex
    trace = start_trace(state, request_id, tenant, "search", req)
    try:
        # Search sends nothing to the generator unless the query is rewritten: an injection
        # attempt only loses its rewrites (flagged), its results are the caller's own documents.
        # Without rewrites there is nothing to guard, so the rules do not run on this hot path.
        attempt = state.guardrails.check_question(req.query) if wants_rewrites(req, state.settings) else None
        if attempt is not None:
            record_decisions(
                state, trace, [attempt.model_copy(update={"action": "flag", "detail": "rewrites skipped"})]
            )
        result = await retrieve(state, req, tenant, trace, rewrites_allowed=attempt is None)
    except BaseException as exc:
        await finish_trace(state, trace, error=f"{type(exc).__name__}: {exc}")
        raise
    state.metrics.requests.labels("search", "200").inc()
    log_query(state, request_id, tenant, "search", req, result)
    trace.timings.update(result.timings_ms)
    await finish_trace(state, trace)
    return SearchResponse(
        request_id=request_id, results=[to_chunk(h) for h in result.hits], timings_ms=result.timings_ms
    )
