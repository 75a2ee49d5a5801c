"""The HTTP server: Text Generation Inference's protocol over the local model.

Routes (wire-compatible with TGI, so ``huggingface_hub.InferenceClient(base_url)`` works unchanged):

- ``POST /generate``: ``{"inputs", "parameters"}`` -> ``{"generated_text", "details"?}``
- ``POST /generate_stream``: the same body -> server-sent events, one per token
- ``POST /``: TGI's compat route (what ``InferenceClient.text_generation`` posts): ``"stream": true``
  streams, else a one-element list
- ``POST /v1/chat/completions``: OpenAI chat completions, streamed (SSE ending ``data: [DONE]``) or not
- ``GET /info``, ``GET /health``, ``GET /metrics`` (Prometheus), ``GET /v1/models``

Errors use TGI's body ``{"error": ..., "error_type": ...}``: 422 validation (bad parameters, prompt
too long), 503 overloaded (no slot within the queue timeout), 500 generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from serving.llm.decoding import find_stop, safe_prefix_length
from serving.llm.engine import Engine, OverloadedError, RunningGeneration
from serving.llm.metrics import LLMMetrics, RequestCounter
from serving.llm.model import GenerationParams, GenerationResult, LocalGenerator
from serving.llm.protocol import (
    ChatIds,
    ChatRequest,
    GenerateRequest,
    RequestError,
    chat_chunk,
    chat_finish_reason,
    chat_response,
    chat_usage_chunk,
    generate_response,
    stream_event,
)
from serving.llm.settings import LLMServerSettings

log = logging.getLogger(__name__)

VERSION = "0.1.0"
ROUTER = "streamrag-llm"
ROUTES = frozenset(
    {
        "/",
        "/generate",
        "/generate_stream",
        "/v1/chat/completions",
        "/info",
        "/health",
        "/metrics",
        "/v1/models",
    }
)


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    )
    return f"data: {data}\n\n"


class SSEResponse(StreamingResponse):
    """A server-sent event stream that cancels its generation however the response ends.

    The body generator's own ``finally`` does not run when the task is cancelled while the generator is
    suspended at a ``yield`` (a client gone during a send), so the response cancels explicitly too.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], running: RunningGeneration) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._running = running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._running.cancel()


class _Service:
    """What the routes share: settings, the model, the engine. Filled in by the app's lifespan."""

    def __init__(self, settings: LLMServerSettings, generator: LocalGenerator | None) -> None:
        self.settings = settings
        self.metrics = LLMMetrics(settings.max_concurrent)
        self._preloaded = generator
        self._generator: LocalGenerator | None = None
        self._engine: Engine | None = None

    @property
    def generator(self) -> LocalGenerator:
        if self._generator is None:
            raise RequestError(503, "the model is loading", "overloaded")
        return self._generator

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RequestError(503, "the model is loading", "overloaded")
        return self._engine

    async def start(self) -> None:
        s = self.settings
        generator = self._preloaded
        if generator is None:
            generator = await asyncio.to_thread(LocalGenerator.load, s.models_dir, s.model_path, s.threads)
        context = generator.max_position_embeddings
        if context is not None and s.max_total_tokens > context:
            raise ValueError(
                f"max_input_tokens + max_new_tokens = {s.max_total_tokens} exceeds the model's context "
                f"of {context} tokens; lower STREAMRAG_LLM_MAX_INPUT_TOKENS or STREAMRAG_LLM_MAX_NEW_TOKENS"
            )
        if s.warmup:  # the first forward passes are several times slower than the next ones
            await asyncio.to_thread(generator.generate, "Hello", GenerationParams(max_new_tokens=2))
        self._generator = generator
        self._engine = Engine(generator, self.metrics, s.max_concurrent, s.queue_timeout_s)
        log.info("serving %s from %s with %d slots", s.model_id, generator.path, s.max_concurrent)

    async def stop(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.shutdown)

    # --- admission -----------------------------------------------------------------------------------

    async def admit(
        self, prompt: str, params: GenerationParams, truncate: int | None = None
    ) -> RunningGeneration:
        """Validate the limits, then wait for a slot and start generating (RequestError: 422 or 503)."""
        arrived = time.perf_counter()  # time to first token counts tokenizing and queueing too
        s = self.settings
        if truncate is not None and truncate > s.max_input_tokens:
            raise RequestError(
                422, f"`truncate` must be strictly positive and <= {s.max_input_tokens}. Given: {truncate}"
            )
        if params.max_new_tokens > s.max_new_tokens:
            raise RequestError(
                422, f"`max_new_tokens` must be <= {s.max_new_tokens}. Given: {params.max_new_tokens}"
            )
        if len(params.stop) > s.max_stop_sequences:
            raise RequestError(
                422, f"`stop` supports up to {s.max_stop_sequences} stop sequences. Given: {len(params.stop)}"
            )
        ids = await asyncio.to_thread(self.generator.encode, prompt, truncate)
        if not ids:
            raise RequestError(422, "`inputs` cannot be empty")
        if len(ids) > s.max_input_tokens:
            raise RequestError(
                422, f"`inputs` must have at most {s.max_input_tokens} tokens. Given: {len(ids)}"
            )
        try:
            running = await self.engine.start(ids, params, arrived)
        except OverloadedError as exc:
            raise RequestError(503, f"Model is overloaded: {exc}", "overloaded") from None
        return running


async def _collect(running: RunningGeneration, request: Request) -> GenerationResult | None:
    """Run a generation to its end; None when the client went away first."""
    result = None
    try:
        async for step in running.steps(request.is_disconnected):
            result = step.result
    except Exception as exc:
        log.exception("generation failed")
        raise RequestError(500, f"generation failed: {exc}", "generation") from exc
    return result


def _validation_message(exc: RequestValidationError) -> str:
    """One line naming each bad field, e.g. ``parameters.max_new_tokens: Input should be greater than 0``."""
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON: {error.get('ctx', {}).get('error', '')}".rstrip(": "))
            continue
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(settings: LLMServerSettings | None = None, generator: LocalGenerator | None = None) -> FastAPI:
    """The LLM server app. The model loads (once) at startup, unless a loaded ``generator`` is given.

    Startup fails with ``ModelNotAvailableError`` when the model cannot be found locally and with
    ``ValueError`` when the token limits exceed the model's context.
    """
    settings = settings or LLMServerSettings()
    service = _Service(settings, generator)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="streamrag LLM server",
        version=VERSION,
        description="Text Generation Inference's protocol over the embedded local model.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc), "error_type": "validation"}, status_code=422)

    # --- TGI ---------------------------------------------------------------------------------------

    async def generate_once(body: GenerateRequest, request: Request) -> dict[str, Any] | None:
        params = body.parameters.generation_params(settings.default_max_new_tokens)
        running = await service.admit(body.inputs, params, body.parameters.truncate)
        result = await _collect(running, request)
        return None if result is None else generate_response(result, body)

    async def generate_events(body: GenerateRequest, request: Request) -> SSEResponse:
        params = body.parameters.generation_params(settings.default_max_new_tokens)
        running = await service.admit(body.inputs, params, body.parameters.truncate)

        async def events() -> AsyncIterator[str]:
            try:
                async for step in running.steps(request.is_disconnected):
                    yield sse(stream_event(step, body))
            except Exception as exc:
                log.exception("generation failed")
                yield sse({"error": f"generation failed: {exc}", "error_type": "generation"})

        return SSEResponse(events(), running)

    @app.post("/generate", summary="Generate text (TGI)")
    async def generate(body: GenerateRequest, request: Request) -> Response:
        answer = await generate_once(body, request)
        return JSONResponse(answer) if answer is not None else Response(status_code=499)

    @app.post("/generate_stream", summary="Generate text as server-sent events, one per token (TGI)")
    async def generate_stream(body: GenerateRequest, request: Request) -> Response:
        return await generate_events(body, request)

    @app.post("/", summary="TGI's compat route: streams when `stream` is true, else a one-element list")
    async def compat_generate(body: GenerateRequest, request: Request) -> Response:
        if body.stream:
            return await generate_events(body, request)
        answer = await generate_once(body, request)
        return JSONResponse([answer]) if answer is not None else Response(status_code=499)

    # --- OpenAI chat ---------------------------------------------------------------------------------

    @app.post("/v1/chat/completions", summary="OpenAI chat completions (streamed or not)")
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        params = body.generation_params(settings.default_max_new_tokens)
        messages = [m.template_dict() for m in body.messages]
        prompt = await asyncio.to_thread(service.generator.chat_prompt, messages)
        running = await service.admit(prompt, params)
        ids = ChatIds(settings.model_id, f"{ROUTER}-{VERSION}")
        stops = params.stop
        if not body.stream:
            result = await _collect(running, request)
            if result is None:
                return Response(status_code=499)
            return JSONResponse(chat_response(ids, _cut_at_stop(result.text, stops), result))
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return SSEResponse(_chat_events(running, request, ids, stops, include_usage), running)

    # --- operations --------------------------------------------------------------------------------

    @app.get("/info", summary="What is served and its limits (TGI's /info)")
    async def info() -> dict[str, Any]:
        generator = service.generator
        return {
            "model_id": settings.model_id,
            "model_sha": None,
            "model_dtype": str(generator.model.dtype),
            "model_device_type": "cpu",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": settings.max_concurrent,
            "max_best_of": 1,
            "max_stop_sequences": settings.max_stop_sequences,
            "max_input_tokens": settings.max_input_tokens,
            "max_input_length": settings.max_input_tokens,
            "max_total_tokens": settings.max_total_tokens,
            "max_new_tokens": settings.max_new_tokens,
            "default_max_new_tokens": settings.default_max_new_tokens,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": ROUTER,
            "version": VERSION,
            "sha": None,
            "docker_label": None,
            "model_path": str(generator.path),
        }

    @app.get("/health", summary="200 once the model is loaded and serving")
    async def health() -> dict[str, Any]:
        engine = service.engine
        return {"status": "ok", "active_slots": engine.active, "max_concurrent": engine.max_concurrent}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", summary="The served model (OpenAI's model list)")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": settings.model_id, "object": "model", "created": 0, "owned_by": "streamrag"}],
        }

    app.add_middleware(RequestCounter, metrics=service.metrics, routes=ROUTES)
    return app


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to its first stop sequence (OpenAI leaves stop sequences out of the reply)."""
    found = find_stop(text, stops, 0) if stops else None
    return text if found is None else text[: found[1]]


async def _chat_events(
    running: RunningGeneration,
    request: Request,
    ids: ChatIds,
    stops: Sequence[str],
    include_usage: bool,
) -> AsyncIterator[str]:
    """Chat chunks for a running generation, holding back text that may begin a stop sequence."""
    text = ""
    sent = 0
    visible: Callable[[str], int] = (lambda t: safe_prefix_length(t, stops)) if stops else len
    try:
        async for step in running.steps(request.is_disconnected):
            text += step.token.text
            if step.result is None:
                shown = visible(text)
                if shown > sent:
                    yield sse(chat_chunk(ids, text[sent:shown], None))
                    sent = shown
                continue
            final = _cut_at_stop(step.result.text, stops)
            yield sse(chat_chunk(ids, final[sent:], chat_finish_reason(step.result.finish_reason)))
            if include_usage:
                yield sse(chat_usage_chunk(ids, step.result))
            yield sse("[DONE]")
    except Exception as exc:
        log.exception("generation failed")
        yield sse({"error": f"generation failed: {exc}", "error_type": "generation"})
