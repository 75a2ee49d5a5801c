"""Measuring a running TGI-compatible server: time to first token and tokens per second under concurrency.

Requests go through ``huggingface_hub.InferenceClient`` streaming, as the project's clients do, so the
numbers include HTTP and SSE overhead. Times are seconds of wall clock on the client.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

from huggingface_hub import InferenceClient

from serving.llm.client import allow_self_hosted_inference

# Greedy SmolLM2 continues this prompt for hundreds of tokens, so every request generates max_new_tokens.
DEFAULT_PROMPT = "Once upon a time"


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


def _one(client: InferenceClient, prompt: str, max_new_tokens: int) -> RequestTiming:
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    for _ in client.text_generation(prompt, max_new_tokens=max_new_tokens, stream=True, details=True):
        first = first if first is not None else time.perf_counter()
        tokens += 1
    end = time.perf_counter()
    return RequestTiming(ttft_s=(first or end) - start, total_s=end - start, tokens=tokens)


def bench_round(
    base_url: str, concurrency: int, max_new_tokens: int, prompt: str = DEFAULT_PROMPT
) -> BenchRound:
    """Send ``concurrency`` identical streamed requests at once and time each of them."""
    allow_self_hosted_inference()
    client = InferenceClient(base_url=base_url, timeout=600)
    results: list[RequestTiming] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_one(client, prompt, max_new_tokens))
        except BaseException as exc:  # reported after the round
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return BenchRound(concurrency, wall, results)
