"""``POST /v1/feedback``: a thumbs up or down (with an optional comment and correction) on an answer."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from serving.api.deps import StateDep, TenantDep
from serving.api.flow import ERRORS
from serving.api.models import ErrorBody, FeedbackAccepted, FeedbackRequest, FeedbackStats
from streamrag.contracts import FeedbackEvent, utcnow

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])

_NOT_FOUND = "no request with this id"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeedbackAccepted,
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such request of this tenant."}},
)
async def rate(body: FeedbackRequest, state: StateDep, tenant: TenantDep) -> FeedbackAccepted:
    """Rate a request the caller's tenant made. The rating is an event on the feedback topic, keyed by
    request id and acknowledged by Kafka before the 202; a second rating of the same request replaces
    the first. A request of another tenant is 404, exactly like an unknown one."""
    if state.feedback is None or state.traces is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "feedback is off (feedback_topic or tracing unset)"
        )
    trace = state.traces.get(body.request_id, tenant)
    if trace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    event = FeedbackEvent(
        request_id=body.request_id,
        tenant=tenant,
        rating=body.rating,
        comment=body.comment,
        correction=body.correction,
        generator_model=trace.models.get("generator", "none"),
        embedding_model=trace.models.get("embedding", state.settings.embedding_model_version),
        ts=utcnow(),
    )
    await state.feedback.submit(event)
    return FeedbackAccepted(request_id=body.request_id, rating=body.rating, topic=state.feedback.writer.topic)


@router.get("/stats", response_model=FeedbackStats)
async def stats(state: StateDep) -> FeedbackStats:
    """Up and down counts and the up rate per tenant and generator model (operators' view, like
    /metrics and the dashboard)."""
    return FeedbackStats(rows=state.feedback.stats() if state.feedback is not None else [])
