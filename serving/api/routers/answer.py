"""``POST /v1/answer``: retrieve, guard, generate, stream the answer as Server-Sent Events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from serving.api.deps import StateDep, TenantDep
from serving.api.flow import ERRORS, finish_trace, log_query, retrieve, start_trace
from serving.api.models import AnswerRequest, AnswerResponse, Citation
from serving.api.state import ApiState, record_decisions
from serving.generation.client import GeneratorUnavailable
from serving.generation.prompt import DONT_KNOW, build_prompt
from serving.guardrails.policy import REFUSAL
from serving.retrieval.search import SearchResult, relevant
from serving.tracing.recorder import RequestTrace

router = APIRouter(prefix="/v1", tags=["answer"])


@router.post(
    "/answer",
    response_model=AnswerResponse,
    responses={
        **ERRORS,
        200: {
            "content": {"text/event-stream": {}, "application/json": {}},
            "description": "SSE events `token`, then `replace` (only when a guardrail replaced the answer), "
            "`citations` and `done`; or JSON.",
        },
    },
)
async def answer(req: AnswerRequest, state: StateDep, tenant: TenantDep) -> Any:
    """Retrieve, then generate an answer citing its sources; says it does not know when nothing is relevant.

    With ``stream=true`` (default) the reply is Server-Sent Events: ``event: token`` with
    ``{"text": ...}`` as the model produces it (PII redacted on the way), then ``event: replace``
    with ``{"text", "reason"}`` if a guardrail replaced the answer, then ``event: citations`` and
    ``event: done`` with the request id, the guardrail decisions and timings. Questions that try to
    change or extract the instructions are refused; retrieved chunks that carry instructions are
    left out of the prompt. The request's trace is ``GET /v1/traces/{request_id}``.
    """
    request_id = uuid.uuid4().hex
    trace = start_trace(state, request_id, tenant, "answer", req)
    s = state.settings
    try:
        with trace.step("guardrails_input"):
            refusal = state.guardrails.check_question(req.query)
        if refusal is not None:
            record_decisions(state, trace, [refusal])
            return await _refused(state, req, tenant, request_id, trace)
        result = await retrieve(state, req, tenant, trace)
        with trace.step("guardrails_context"):
            hits, dropped = state.guardrails.screen_context(relevant(result.hits, s.min_score))
        record_decisions(state, trace, dropped)
        with trace.step("prompt"):
            prompt = build_prompt(req.query, hits, state.encoder.count_tokens, s.context_token_budget)
        trace.used(prompt.used)
        if trace.enabled:
            trace.set(prompt=prompt.messages)
        max_new = min(req.max_new_tokens or s.max_new_tokens, s.max_new_tokens_limit)
        # The first piece is awaited here, before any byte of the reply is sent, so that a generator
        # that is down is a 503 with its message rather than a stream that starts and fails.
        gen_start_ns = time.time_ns()
        first_piece = DONT_KNOW
        stream: AsyncGenerator[str, None] | None = None
        if prompt.used:
            stream = state.generator.stream(prompt.messages, max_new)
            try:
                first_piece = await anext(stream, "")
            except GeneratorUnavailable as exc:
                state.metrics.errors.labels("generation").inc()
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except BaseException as exc:
        await finish_trace(state, trace, error=f"{type(exc).__name__}: {exc}")
        raise
    trace.timings.update(result.timings_ms)
    citations = [
        Citation(n=i + 1, doc_id=h.doc_id, version=h.version, chunk_index=h.chunk_index, title=h.title)
        for i, h in enumerate(prompt.used)
    ]
    guard = state.guardrails.answer_guard(tenant)

    async def guarded() -> AsyncIterator[str]:
        """The generator's pieces through the output guard (a leak stops generation)."""
        pieces = [first_piece] if first_piece else []
        try:
            for piece in pieces:
                if out := guard.feed(piece):
                    yield out
            if stream is not None and not guard.leaked:
                async for piece in stream:
                    if out := guard.feed(piece):
                        yield out
                    if guard.leaked:
                        break
            if tail := guard.finish():
                yield tail
        finally:
            if stream is not None:
                await stream.aclose()  # frees the server's slot early

    def judged() -> tuple[str, bool, str | None]:
        """(final answer, dont_know, reason it was replaced or None), decisions recorded."""
        decisions, replacement = state.guardrails.judge_answer(guard, len(prompt.used))
        record_decisions(state, trace, decisions)
        if not prompt.used:
            return guard.sent, True, None
        if replacement is None:
            return guard.sent, False, None
        reason = decisions[-1].rule
        return (replacement or DONT_KNOW), replacement == "", reason

    def generation_done(first_ns: int | None) -> None:
        end_ns = time.time_ns()
        trace.span_at("generate", gen_start_ns, end_ns, max_new_tokens=max_new)
        trace.timings["generate_ms"] = (end_ns - gen_start_ns) / 1e6
        trace.timings["ttft_ms"] = ((first_ns or end_ns) - gen_start_ns) / 1e6

    if not req.stream:
        first_ns: int | None = None
        parts: list[str] = []
        async for out in guarded():
            first_ns = first_ns or time.time_ns()
            parts.append(out)
        generation_done(first_ns)
        text, dont_know, replaced = judged()
        return await _respond(
            state, req, tenant, request_id, trace, result, text, dont_know, [] if replaced else citations
        )

    async def events() -> AsyncIterator[bytes]:
        first_ns: int | None = None
        count = 0
        try:
            async for out in guarded():
                if first_ns is None:
                    first_ns = time.time_ns()
                    state.metrics.ttft.observe((first_ns - gen_start_ns) / 1e9)
                count += 1
                yield _sse("token", {"text": out})
        except Exception as exc:  # the generator failed mid-stream: say so in-band, then stop
            state.metrics.errors.labels("generation").inc()
            yield _sse("error", {"detail": f"generation failed: {exc}"})
            await finish_trace(state, trace, error=f"generation failed: {exc}")
            return
        generation_done(first_ns)
        elapsed_s = trace.timings["generate_ms"] / 1000
        if count and elapsed_s > 0:
            state.metrics.tokens_per_s.observe(count / elapsed_s)
        text, dont_know, replaced = judged()
        if replaced is not None:
            yield _sse("replace", {"text": text, "reason": replaced})
        yield _sse("citations", {"citations": [] if replaced else [c.model_dump() for c in citations]})
        timings = {
            **result.timings_ms,
            "generate_ms": trace.timings["generate_ms"],
            "ttft_ms": trace.timings["ttft_ms"],
        }
        yield _done(request_id, trace, dont_know, False, timings)
        await _record(state, req, tenant, request_id, trace, result, text, dont_know)

    return _event_stream(events(), request_id)


async def _record(
    state: ApiState,
    req: AnswerRequest,
    tenant: str,
    request_id: str,
    trace: RequestTrace,
    result: SearchResult | None,
    text: str,
    dont_know: bool,
) -> None:
    trace.set(answer=text, dont_know=dont_know)
    log_query(state, request_id, tenant, "answer", req, result, text, dont_know)
    state.metrics.requests.labels("answer", "200").inc()
    await finish_trace(state, trace)


async def _respond(
    state: ApiState,
    req: AnswerRequest,
    tenant: str,
    request_id: str,
    trace: RequestTrace,
    result: SearchResult | None,
    text: str,
    dont_know: bool,
    citations: list[Citation],
    refused: bool = False,
) -> AnswerResponse:
    await _record(state, req, tenant, request_id, trace, result, text, dont_know)
    return AnswerResponse(
        request_id=request_id,
        answer=text,
        citations=citations,
        dont_know=dont_know,
        refused=refused,
        guardrails=list(trace.fields["guardrails"]),
        timings_ms=dict(trace.timings),
    )


async def _refused(
    state: ApiState, req: AnswerRequest, tenant: str, request_id: str, trace: RequestTrace
) -> Any:
    """The refusal of an injection attempt: nothing was retrieved or generated."""
    if not req.stream:
        return await _respond(state, req, tenant, request_id, trace, None, REFUSAL, False, [], refused=True)

    async def events() -> AsyncIterator[bytes]:
        yield _sse("token", {"text": REFUSAL})
        yield _sse("citations", {"citations": []})
        yield _done(request_id, trace, False, True, dict(trace.timings))
        await _record(state, req, tenant, request_id, trace, None, REFUSAL, False)

    return _event_stream(events(), request_id)


def _done(
    request_id: str, trace: RequestTrace, dont_know: bool, refused: bool, timings: dict[str, float]
) -> bytes:
    """The stream's last event: the request id, the guardrail decisions and timings."""
    decisions = [d.model_dump() for d in trace.fields["guardrails"]]
    return _sse(
        "done",
        {
            "request_id": request_id,
            "dont_know": dont_know,
            "refused": refused,
            "guardrails": decisions,
            "timings_ms": timings,
        },
    )


def _event_stream(events: AsyncIterator[bytes], request_id: str) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Request-Id": request_id},
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()
