"""The wire formats: Text Generation Inference's ``/generate`` family and OpenAI's chat completions.

Request models validate types and ranges (a violation is answered 422 with TGI's error body
``{"error": ..., "error_type": "validation"}``, which ``huggingface_hub`` raises as ``ValidationError``).
Response builders produce exactly the JSON that ``huggingface_hub`` 1.x parses for TGI: unknown
request fields are ignored, as TGI does, but features this server lacks are refused, never silently
dropped (grammar, best_of > 1, tools, ...).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.llm.model import FinishReason, GenerationParams, GenerationResult, StreamStep, Token

ErrorType = Literal["validation", "overloaded", "generation"]


class RequestError(Exception):
    """A request the server refuses; answered ``status`` with ``{"error": message, "error_type": ...}``."""

    def __init__(self, status: int, message: str, error_type: ErrorType = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


def _unsupported(name: str) -> ValueError:
    return ValueError(f"`{name}` is not supported by this server")


# --- TGI -------------------------------------------------------------------------------------------


class TGIParameters(BaseModel):
    """TGI's ``parameters`` object. Omitted fields take the server's defaults (greedy decoding)."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int | None = Field(default=None, gt=0)
    do_sample: bool = False
    temperature: float | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    typical_p: float | None = Field(default=None, gt=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=0, lt=2**64)
    stop: list[str] = Field(default_factory=list)
    truncate: int | None = Field(default=None, gt=0)
    return_full_text: bool | None = None
    details: bool = False
    decoder_input_details: bool = False
    best_of: int | None = Field(default=None, gt=0)
    top_n_tokens: int | None = Field(default=None, ge=0)
    watermark: bool = False
    grammar: Any = None
    adapter_id: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops_not_empty(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop sequences must not be empty strings")
        return value

    @model_validator(mode="after")
    def _supported(self) -> TGIParameters:
        if self.best_of is not None and self.best_of > 1:
            raise _unsupported("best_of > 1")
        if self.top_n_tokens:
            raise _unsupported("top_n_tokens")
        if self.watermark:
            raise _unsupported("watermark")
        if self.grammar is not None:
            raise _unsupported("grammar")
        if self.adapter_id:
            raise _unsupported("adapter_id")
        return self

    def generation_params(self, default_max_new_tokens: int) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens or default_max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            typical_p=self.typical_p,
            repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            stop=tuple(self.stop),
            prefill_logprobs=self.details and self.decoder_input_details,
        )


class GenerateRequest(BaseModel):
    """Body of ``POST /generate``, ``/generate_stream`` and ``/`` (where ``stream`` picks the form)."""

    model_config = ConfigDict(extra="ignore")

    inputs: str = Field(min_length=1)
    parameters: TGIParameters = Field(default_factory=TGIParameters)
    stream: bool = False


def _finish(reason: FinishReason) -> str:
    # "cancelled" only ends generations whose client has gone, so no client ever reads it; TGI knows
    # three reasons, and "length" is the closest.
    return "length" if reason == "cancelled" else reason


def _token(token: Token) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def generate_response(result: GenerationResult, request: GenerateRequest) -> dict[str, Any]:
    """The JSON of ``POST /generate``: ``{"generated_text", "details"?}``."""
    p = request.parameters
    body: dict[str, Any] = {
        "generated_text": request.inputs + result.text if p.return_full_text else result.text
    }
    if p.details:
        body["details"] = {
            "finish_reason": _finish(result.finish_reason),
            "generated_tokens": result.generated_tokens,
            "seed": result.seed,
            "prefill": [{"id": t.id, "text": t.text, "logprob": t.logprob} for t in result.prefill],
            "tokens": [_token(t) for t in result.tokens],
            "top_tokens": None,
            "best_of_sequences": None,
        }
    return body


def stream_event(step: StreamStep, request: GenerateRequest) -> dict[str, Any]:
    """One SSE event of ``POST /generate_stream``; the last carries generated_text (and details)."""
    event: dict[str, Any] = {
        "index": step.index,
        "token": _token(step.token),
        "top_tokens": None,
        "generated_text": None,
        "details": None,
    }
    result = step.result
    if result is not None:
        p = request.parameters
        event["generated_text"] = request.inputs + result.text if p.return_full_text else result.text
        if p.details:
            event["details"] = {
                "finish_reason": _finish(result.finish_reason),
                "generated_tokens": result.generated_tokens,
                "seed": result.seed,
                "input_length": result.prompt_tokens,
            }
    return event


# --- OpenAI chat completions -----------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text" or self.text is None:
            raise ValueError(f"only text content parts are supported, got type {self.type!r}")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1)
    content: str | list[ContentPart]

    def template_dict(self) -> dict[str, str]:
        """The message as the chat template takes it (text parts joined)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text or "" for p in self.content)
        return {"role": self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """Body of ``POST /v1/chat/completions``. Greedy unless ``temperature`` > 0 or ``top_p`` < 1.

    ``model`` is accepted and ignored (one model is served). Stop sequences are cut from the reply.
    """

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, lt=2**64)
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, gt=0)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None

    @model_validator(mode="after")
    def _supported(self) -> ChatRequest:
        if self.n is not None and self.n > 1:
            raise _unsupported("n > 1")
        if self.logprobs or self.top_logprobs:
            raise _unsupported("logprobs")
        if self.tools or self.tool_choice not in (None, "none"):
            raise _unsupported("tools")
        if self.response_format is not None:
            raise _unsupported("response_format")
        if any(not s for s in self.stops):
            raise ValueError("stop sequences must not be empty strings")
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def generation_params(self, default_max_new_tokens: int) -> GenerationParams:
        sampling = bool(self.temperature) or (self.top_p is not None and self.top_p < 1)
        return GenerationParams(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or default_max_new_tokens,
            do_sample=sampling,
            temperature=self.temperature if self.temperature else None,
            top_p=self.top_p,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            seed=self.seed,
            stop=self.stops,
        )


def chat_finish_reason(reason: FinishReason) -> str:
    """OpenAI's finish_reason: "length" when cut by max_tokens, else "stop"."""
    return "length" if reason in ("length", "cancelled") else "stop"


class ChatIds:
    """The identity fields every chunk of one chat completion repeats."""

    def __init__(self, model: str, fingerprint: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.fingerprint = fingerprint

    def fields(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }


def usage(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.generated_tokens,
        "total_tokens": result.prompt_tokens + result.generated_tokens,
    }


def chat_response(ids: ChatIds, content: str, result: GenerationResult) -> dict[str, Any]:
    """The JSON of a non-streamed chat completion."""
    return {
        **ids.fields("chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": chat_finish_reason(result.finish_reason),
            }
        ],
        "usage": usage(result),
    }


def chat_chunk(ids: ChatIds, content: str | None, finish_reason: str | None) -> dict[str, Any]:
    """One streamed chat chunk: a content delta, and on the last one the finish reason."""
    delta: dict[str, Any] = {"role": "assistant"}
    if content is not None:
        delta["content"] = content
    return {
        **ids.fields("chat.completion.chunk"),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def chat_usage_chunk(ids: ChatIds, result: GenerationResult) -> dict[str, Any]:
    """The extra last chunk sent when ``stream_options.include_usage`` is true (no choices)."""
    return {**ids.fields("chat.completion.chunk"), "choices": [], "usage": usage(result)}
