"""The generator is a separate service reached through ``huggingface_hub``'s inference client.

Text Generation Inference, any OpenAI-compatible server (vLLM, ...) or the embedded
``streamrag llm serve`` all speak the chat-completions protocol used here, so the API never
loads an LLM itself and the generator scales on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from huggingface_hub import AsyncInferenceClient


class Generator:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 120.0) -> None:
        from serving.llm.client import allow_self_hosted_inference

        allow_self_hosted_inference()  # HF_HUB_OFFLINE would otherwise refuse even a local TGI
        self.base_url = base_url.rstrip("/")
        self.client = AsyncInferenceClient(base_url=self.base_url, token=token, timeout=timeout_s)

    async def stream(self, messages: list[dict[str, str]], max_new_tokens: int) -> AsyncIterator[str]:
        """Yield the answer's text pieces as the model produces them (greedy, deterministic)."""
        stream: Any = await self.client.chat_completion(
            messages, max_tokens=max_new_tokens, stream=True, temperature=0.0
        )
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta.content
            if delta:
                yield delta

    async def complete(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        out: Any = await self.client.chat_completion(
            messages, max_tokens=max_new_tokens, stream=False, temperature=0.0
        )
        return str(out.choices[0].message.content or "")

    async def healthy(self) -> bool:
        try:
            import httpx

            async with httpx.AsyncClient(timeout=3) as http:
                return (await http.get(f"{self.base_url}/health")).status_code == 200
        except Exception:
            return False
