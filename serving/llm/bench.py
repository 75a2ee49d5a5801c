"""Measuring a running chat-completions server (llama.cpp, TGI, vLLM): time to first token and tokens per second under concurrency.

Requests go through ``huggingface_hub.InferenceClient`` streaming, as the project's clients do, so the
numbers include HTTP and SSE overhead. Times are seconds of wall clock on the client.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from huggingface_hub import InferenceClient

from serving.llm.client import allow_self_hosted_inference


# A RAG-sized request (about 660 tokens with the chat template): the first Debian FAQ sections as the
# context, a question and an instruction to write at length, so that requests reach max_new_tokens.
@functools.cache
def _faq_sections() -> list[Any]:
    """The Debian FAQ's sections, parsed once per process (every request's prompt is cut from them)."""
    from serving.eval.corpus import build_corpus

    return build_corpus(max_docs=None, sources=("debian-faq",)).documents


# Each request gets other sections (``offset``), so no request reuses another's prompt beyond the shared
# system message, as in RAG where every question retrieves its own context.
def rag_messages(offset: int = 0, target_chars: int = 2400) -> list[dict[str, str]]:
    """System + user messages of about 660 tokens built from real Debian FAQ text."""
    docs = _faq_sections()
    context = ""
    for doc in docs[offset % len(docs) :]:
        context += f"{doc.title}\n{doc.body}\n\n"
        if len(context) >= target_chars:
            break
    return [
        {"role": "system", "content": "You answer questions about Debian using the documents given."},
        {
            "role": "user",
            "content": f"Documents:\n{context[:target_chars]}\n\nExplain in detail what these documents say.",
        },
    ]


_OFFSETS = itertools.count(0, 7)


@dataclass(frozen=True)
class RequestTiming:
    """One streamed request: seconds to its first token, seconds in all, and tokens received."""

    ttft_s: float
    total_s: float
    tokens: int

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first token (the steady generation speed)."""
        after_first = self.total_s - self.ttft_s
        return (self.tokens - 1) / after_first if self.tokens > 1 and after_first > 0 else 0.0


@dataclass(frozen=True)
class BenchRound:
    """``concurrency`` requests sent at once; ``wall_s`` from the first send to the last token."""

    concurrency: int
    wall_s: float
    requests: list[RequestTiming]

    @property
    def aggregate_rate(self) -> float:
        """Tokens per second summed over the concurrent requests."""
        return sum(r.tokens for r in self.requests) / self.wall_s

    def summary(self) -> str:
        ttft = [r.ttft_s for r in self.requests]
        rates = [r.decode_rate for r in self.requests]
        return (
            f"concurrency {self.concurrency}: time to first token median {statistics.median(ttft):.2f} s "
            f"(max {max(ttft):.2f}); per-request {statistics.mean(rates):.1f} tokens/s; "
            f"aggregate {self.aggregate_rate:.1f} tokens/s over {self.wall_s:.1f} s"
        )


def time_stream(start: float, chunks: Iterable[Any], has_token: Callable[[Any], bool]) -> RequestTiming:
    """Time a token stream opened at ``start`` (perf_counter): ``has_token(chunk)`` marks a token."""
    first: float | None = None
    tokens = 0
    for chunk in chunks:
        if has_token(chunk):
            first = first if first is not None else time.perf_counter()
            tokens += 1  # llama.cpp sends one chunk per token
    end = time.perf_counter()
    return RequestTiming(ttft_s=(first or end) - start, total_s=end - start, tokens=tokens)


def _one(client: InferenceClient, messages: list[dict[str, str]], max_new_tokens: int) -> RequestTiming:
    start = time.perf_counter()
    stream: Any = client.chat_completion(messages, max_tokens=max_new_tokens, stream=True, temperature=0.0)
    return time_stream(start, stream, lambda c: bool(c.choices and c.choices[0].delta.content))


def bench_round(
    base_url: str,
    concurrency: int,
    max_new_tokens: int,
    prompts: list[list[dict[str, str]]] | None = None,
) -> BenchRound:
    """Send ``concurrency`` streamed requests at once and time each of them.

    Request ``i`` gets ``prompts[i]``, else its own FAQ context.
    """
    allow_self_hosted_inference()
    client = InferenceClient(base_url=base_url, timeout=600)
    results: list[RequestTiming] = []
    errors: list[BaseException] = []

    prompts = prompts or [rag_messages(next(_OFFSETS)) for _ in range(concurrency)]

    def run(messages: list[dict[str, str]]) -> None:
        try:
            results.append(_one(client, messages, max_new_tokens))
        except BaseException as exc:  # reported after the round
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in prompts]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return BenchRound(concurrency, wall, results)
