"""The generator is a separate service reached through ``huggingface_hub``'s inference client.

Text Generation Inference, vLLM, llama.cpp's server (the embedded ``streamrag llm serve``) all
speak the chat-completions protocol used here, so the API never loads an LLM itself and the
generator scales on its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError

if TYPE_CHECKING:
    from serving.settings import ApiSettings

# Where a small model drifts past its answer it starts a new turn or a new "Question:"; stop there.
STOP_SEQUENCES = ("<|im_end|>", "<|endoftext|>", "\nQuestion:", "\nDocuments:")


class GeneratorUnavailable(RuntimeError):
    """The generator could not be reached or refused the request; the API answers 503 with the message."""


@dataclass(frozen=True)
class Decoding:
    """Greedy decoding with a repetition guard; see ``ApiSettings`` for each field's meaning."""

    frequency_penalty: float = 0.3
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = STOP_SEQUENCES


class Generator:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 300.0,
        decoding: Decoding | None = None,
    ) -> None:
        from serving.llm.client import allow_self_hosted_inference

        allow_self_hosted_inference()  # HF_HUB_OFFLINE would otherwise refuse even a local server
        self.base_url = base_url.rstrip("/")
        self.decoding = decoding or Decoding()
        self.client = AsyncInferenceClient(base_url=self.base_url, token=token, timeout=timeout_s)
        self._token = token
        self._model: tuple[float, str] | None = None

    @classmethod
    def from_settings(cls, settings: ApiSettings, url: str | None = None) -> Generator:
        """The generator ``settings`` name: ``url``, else ``tgi_url``, else the embedded server's port."""
        token = settings.tgi_token.get_secret_value() if settings.tgi_token else None
        return cls(
            url or settings.tgi_url or f"http://127.0.0.1:{settings.llm_port}",
            token,
            decoding=Decoding(frequency_penalty=settings.frequency_penalty),
        )

    async def _chat(self, messages: list[dict[str, str]], max_new_tokens: int, stream: bool) -> Any:
        d = self.decoding
        try:
            return await self.client.chat_completion(
                messages,
                stream=stream,
                max_tokens=max_new_tokens,
                temperature=0.0,
                frequency_penalty=d.frequency_penalty,
                presence_penalty=d.presence_penalty,
                stop=list(d.stop),
            )
        except (httpx.HTTPError, HfHubHTTPError, OSError) as exc:
            raise GeneratorUnavailable(f"the generator at {self.base_url} is unavailable: {exc}") from exc

    async def stream(self, messages: list[dict[str, str]], max_new_tokens: int) -> AsyncGenerator[str, None]:
        """Yield the answer's text pieces as the model produces them (greedy, deterministic).

        Raises :class:`GeneratorUnavailable` when the server cannot be reached or refuses the request
        before the first piece; a failure after it propagates as is (the reply has begun).
        """
        stream = await self._chat(messages, max_new_tokens, stream=True)
        try:
            async for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta.content
                if delta:
                    yield delta
        finally:
            # Closing the response tells the server the client is gone, so it frees its slot.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def complete(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        out = await self._chat(messages, max_new_tokens, stream=False)
        return str(out.choices[0].message.content or "")

    async def model_id(self, ttl_s: float = 30.0) -> str:
        """The served model's id from ``GET /v1/models`` (llama.cpp, vLLM and TGI serve it), cached
        for ``ttl_s`` so a switch of the served model shows within that; "unknown" if unreadable."""
        now = time.monotonic()
        if self._model is not None and now - self._model[0] < ttl_s:
            return self._model[1]
        model = "unknown"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with httpx.AsyncClient(timeout=3) as http:
                resp = await http.get(f"{self.base_url}/v1/models", headers=headers)
            if resp.status_code == 200:
                data = resp.json().get("data") or []
                if data and data[0].get("id"):
                    model = str(data[0]["id"])
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        self._model = (now, model)
        return model

    async def healthy(self) -> bool:
        """Whether ``/health`` answers 200 (TGI, vLLM and ``streamrag llm serve`` all serve it)."""
        try:
            async with httpx.AsyncClient(timeout=3) as http:
                return (await http.get(f"{self.base_url}/health")).status_code == 200
        except httpx.HTTPError:
            return False
