"""One request's trace, built while the request runs: OpenTelemetry spans and the trace record.

Each step of a request (freshness wait, rewrites, retrieval and its sub-steps, guardrails,
prompt, generation) is a span under the request's root span, and its duration goes into the
record's ``timings_ms``. Spans are parented explicitly rather than through the ambient context,
because an answer streams from a generator that outlives the route function.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from streamrag.contracts import GuardrailDecision, TraceCandidate, TraceChunk, TraceRecord, utcnow

Attr = str | bool | int | float


class RequestTrace:
    def __init__(
        self,
        tracer: Tracer,
        request_id: str,
        tenant: str,
        endpoint: str,
        question: str,
        filters: dict[str, Any],
        enabled: bool = True,
    ) -> None:
        self.tracer = tracer
        self.enabled = enabled
        """False: spans are no-ops and the record's lists are not built (tracing off)."""
        self.root = tracer.start_span(
            f"streamrag.{endpoint}",
            attributes={
                "streamrag.request_id": request_id,
                "streamrag.tenant": tenant,
                "streamrag.endpoint": endpoint,
            },
        )
        self._ctx = trace.set_span_in_context(self.root)
        self.fields: dict[str, Any] = {
            "request_id": request_id,
            "tenant": tenant,
            "endpoint": endpoint,
            "question": question,
            "filters": dict(filters),
            "rewrites": {},
            "candidates": [],
            "results": [],
            "chunks_used": [],
            "prompt": None,
            "guardrails": [],
            "answer": None,
            "dont_know": False,
            "timings_ms": {},
            "models": {},
            "collection": None,
            "index_offsets": {},
            "index_sampled_at": None,
        }
        # Every field is set here: model_construct would otherwise call each missing field's
        # default factory through pydantic's signature check (~0.5 ms a request, measured).
        self._ended = False

    @property
    def timings(self) -> dict[str, float]:
        t: dict[str, float] = self.fields["timings_ms"]
        return t

    @contextmanager
    def step(self, name: str, **attributes: Attr) -> Iterator[Span]:
        """A child span of the request around the block; its milliseconds go to ``<name>_ms``."""
        start = time.perf_counter()
        span = self.tracer.start_span(name, context=self._ctx, attributes=attributes)
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()
            self.timings[f"{name}_ms"] = (time.perf_counter() - start) * 1000

    def substeps(self, parent: Span, steps: Iterable[tuple[str, int, int]]) -> None:
        """Spans for steps timed elsewhere (epoch nanoseconds), as children of ``parent``."""
        ctx = trace.set_span_in_context(parent)
        for name, start_ns, end_ns in steps:
            self.tracer.start_span(name, context=ctx, start_time=start_ns).end(end_time=end_ns)

    def span_at(self, name: str, start_ns: int, end_ns: int, **attributes: Attr) -> None:
        """A child span of the request for a step timed elsewhere (the generator's first token)."""
        self.tracer.start_span(name, context=self._ctx, start_time=start_ns, attributes=attributes).end(
            end_time=end_ns
        )

    def decide(self, decisions: Iterable[GuardrailDecision]) -> None:
        for d in decisions:
            self.fields["guardrails"].append(d)
            self.root.add_event(
                "guardrail", {"stage": d.stage, "rule": d.rule, "action": d.action, "target": d.target}
            )

    def set(self, **fields: Any) -> None:
        self.fields.update(fields)

    def retrieval(self, candidates: Iterable[Any], results: Iterable[Any], limit: int = 20) -> None:
        """Record the best ``limit`` fused candidates and the returned hits (anything with the score
        fields). 20 covers every k a request may ask for up to 20 with the candidates it beat."""
        if not self.enabled:
            return
        self.fields["candidates"] = [_candidate(c) for c in list(candidates)[:limit]]
        self.fields["results"] = [_candidate(h) for h in results]

    def used(self, chunks: Iterable[Any]) -> None:
        if not self.enabled:
            return
        self.fields["chunks_used"] = [
            TraceChunk.model_construct(
                n=i + 1, doc_id=h.doc_id, version=h.version, chunk_index=h.chunk_index, title=h.title
            )
            for i, h in enumerate(chunks)
        ]

    def index_position(self, offsets: dict[str, int], sampled_at: datetime | None) -> None:
        self.fields["index_offsets"] = offsets
        self.fields["index_sampled_at"] = sampled_at

    def finish(self, error: str | None = None) -> TraceRecord:
        """End the root span and return the record (call once)."""
        if error is not None:
            self.root.set_status(Status(StatusCode.ERROR, error))
        if not self._ended:
            self.root.end()
            self._ended = True
        # Built from this process's own typed values on every request: constructed, not validated
        # again (a stored or fetched trace is validated when it is read back).
        return TraceRecord.model_construct(**self.fields, error=error, ts=utcnow())


def _candidate(c: Any) -> TraceCandidate:
    # Built from the retriever's own typed records on every request: constructed, not re-validated.
    return TraceCandidate.model_construct(
        doc_id=c.doc_id,
        version=c.version,
        chunk_index=getattr(c, "chunk_index", None),
        score=float(c.score),
        dense_score=c.dense_score,
        sparse_score=c.sparse_score,
    )
