"""``GET /v1/traces/{request_id}``: every step of one of the caller's requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from serving.api.deps import StateDep, TenantDep
from serving.api.models import ErrorBody
from streamrag.contracts import TraceRecord

router = APIRouter(prefix="/v1/traces", tags=["traces"])


@router.get(
    "/{request_id}",
    response_model=TraceRecord,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
async def get_trace(
    request_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], state: StateDep, tenant: TenantDep
) -> TraceRecord:
    """The question, rewrites, candidates with their dense and sparse scores, the chunks used, the prompt
    as sent, guardrail decisions, the answer, timings per step, model and collection versions and the
    index position the request was answered at. 404 for unknown ids and for other tenants' requests."""
    found = state.traces.get(request_id, tenant) if state.traces is not None else None
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "no trace with this id (unknown, expired, or tracing off)"
        )
    return found
