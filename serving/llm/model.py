"""The local generator: one causal LM, many independent generations, each yielding tokens one by one.

:class:`LocalGenerator` runs a manual decode loop (one forward pass per token with a per-request
KV cache) instead of ``model.generate``, because the server needs, per token, the id, text and
logprob (TGI's stream format), stop sequences found in decoded text, and a cancel flag checked before
every forward pass so that a request whose client went away stops within one token. The model is
shared and read-only; every call owns its cache and random generator, so calls from several threads
run concurrently (torch releases the GIL inside its ops).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from serving.llm.decoding import IncrementalDetokenizer, find_stop
from serving.llm.loading import LoadedModel, load_model

FinishReason = Literal["length", "eos_token", "stop_sequence", "cancelled"]


@dataclass(frozen=True)
class GenerationParams:
    """How to generate; mirrors TGI's ``parameters``. Greedy unless sampling is asked for.

    Sampling is on when ``do_sample`` is true or any warper is set (``temperature`` != 1, ``top_k``,
    ``top_p`` < 1, ``typical_p`` < 1), as in TGI. ``seed`` makes sampling reproducible; without one a
    random seed is drawn and reported in the result. Penalties: ``repetition_penalty`` (CTRL, 1 = off,
    over prompt and output), ``frequency_penalty`` and ``presence_penalty`` (OpenAI, 0 = off, over the
    output). ``stop``: generation ends once the decoded output contains one of them (it is kept in
    the output, as TGI does).
    """

    max_new_tokens: int = 100
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    prefill_logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError("temperature must be strictly positive")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError("top_k must be non-negative")
        for name in ("top_p", "typical_p"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise ValueError("repetition_penalty must be strictly positive")
        if any(not s for s in self.stop):
            raise ValueError("stop sequences must not be empty")

    @property
    def sampling(self) -> bool:
        return (
            self.do_sample
            or (self.temperature is not None and self.temperature != 1.0)
            or bool(self.top_k)
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )


@dataclass(frozen=True)
class Token:
    """One generated token. ``logprob`` is natural-log probability under the (warped) distribution.

    Special tokens (the end-of-turn token) have ``special=True`` and empty text, so joining the texts of
    a stream always gives the generated text.
    """

    id: int
    text: str
    logprob: float
    special: bool


@dataclass(frozen=True)
class PrefillToken:
    """One prompt token; ``logprob`` is None for the first (nothing predicts it)."""

    id: int
    text: str
    logprob: float | None


@dataclass(frozen=True)
class GenerationResult:
    """A finished (or cancelled) generation. ``text`` excludes the prompt and special tokens."""

    text: str
    tokens: list[Token]
    finish_reason: FinishReason
    prompt_tokens: int
    seed: int | None
    prefill: list[PrefillToken] = field(default_factory=list)

    @property
    def generated_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class StreamStep:
    """One token of a stream; ``index`` counts from 1; ``result`` is set on the last step only."""

    token: Token
    index: int
    result: GenerationResult | None = None


class LocalGenerator:
    """Generates text with a local causal LM. Thread-safe: calls share only the read-only model."""

    def __init__(self, loaded: LoadedModel, threads: int | None = None) -> None:
        """``threads``: torch intra-op threads each generation uses (None: leave torch's setting)."""
        self.threads = threads
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.path = loaded.path
        self.vocab_size: int = int(self.model.get_output_embeddings().weight.shape[0])
        self.max_position_embeddings: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.eos_token_ids: frozenset[int] = frozenset(self._eos_ids())

    @classmethod
    def load(
        cls, models_dir: Path, model_path: Path | None = None, threads: int | None = None
    ) -> LocalGenerator:
        """Load the bundled model (converted into ``models_dir`` once) or the folder ``model_path``."""
        return cls(load_model(models_dir, model_path), threads)

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        return {i for i in ids if i is not None}

    # --- prompts ------------------------------------------------------------------------------------

    def encode(self, prompt: str, truncate: int | None = None) -> list[int]:
        """Token ids of ``prompt``; with ``truncate``, only its last ``truncate`` tokens (as TGI)."""
        ids: list[int] = self.tokenizer(prompt)["input_ids"]
        return ids[-truncate:] if truncate else ids

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The model's chat template applied to ``messages``, ending with the assistant's turn."""
        text: str = self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return text

    # --- generation ---------------------------------------------------------------------------------

    def generate(
        self, prompt: str | Sequence[int], params: GenerationParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Generate to the end and return the result (finish_reason "cancelled" if ``cancel`` was set)."""
        result: GenerationResult | None = None
        for step in self.stream(prompt, params, cancel):
            result = step.result
        if result is None:  # cancelled before the first token
            ids = self._prompt_ids(prompt)
            return GenerationResult("", [], "cancelled", len(ids), params.seed)
        return result

    def stream(
        self, prompt: str | Sequence[int], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamStep]:
        """Yield generated tokens one by one; the last step carries the :class:`GenerationResult`.

        ``cancel`` is checked before every forward pass: once set, the stream ends after at most one
        more token, and that token's step carries a result with finish_reason "cancelled".
        """
        prompt_ids = self._prompt_ids(prompt)
        if not prompt_ids:
            raise ValueError("the prompt has no tokens")
        if self.threads is not None:
            # OpenMP keeps the thread count per OS thread, so set it in whichever thread generates.
            torch.set_num_threads(self.threads)
        seed = params.seed if params.seed is not None or not params.sampling else random.getrandbits(63)
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        detok = IncrementalDetokenizer(self.tokenizer, prompt_ids)
        sampler = _Sampler(params, self.vocab_size, prompt_ids, rng)
        if cancel is not None and cancel.is_set():
            return
        logits, cache, prefill = self._prefill(prompt_ids, params.prefill_logprobs)
        tokens: list[Token] = []
        text = ""
        for index in range(1, params.max_new_tokens + 1):
            token_id, logprob = sampler.choose(logits)
            special = token_id in self.eos_token_ids
            last = index == params.max_new_tokens
            finish: FinishReason | None = "eos_token" if special else ("length" if last else None)
            piece = ""
            if not special:
                searched = len(text)
                piece = detok.add(token_id)
                text += piece
                if params.stop and find_stop(text, params.stop, searched) is not None:
                    finish = "stop_sequence"
            if finish is None and cancel is not None and cancel.is_set():
                finish = "cancelled"
            if finish is not None:
                tail = detok.flush()  # the end: release a held-back partial character, if any
                piece, text = piece + tail, text + tail
            token = Token(token_id, piece, logprob, special)
            tokens.append(token)
            if finish is not None:
                result = GenerationResult(text, tokens, finish, len(prompt_ids), seed, prefill)
                yield StreamStep(token, index, result)
                return
            yield StreamStep(token, index)
            logits = self._step(token_id, cache)

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        return self.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def _prefill(
        self, prompt_ids: list[int], with_logprobs: bool
    ) -> tuple[torch.Tensor, Any, list[PrefillToken]]:
        """Run the prompt; return the next-token logits, the KV cache and (if asked) prompt logprobs."""
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([prompt_ids]),
                use_cache=True,
                # Only the last position's logits are needed to generate: skipping the others saves
                # a (prompt length x vocabulary) projection.
                logits_to_keep=0 if with_logprobs else 1,
            )
            logits = out.logits[0, -1, :].float()
            prefill: list[PrefillToken] = []
            if with_logprobs:
                logprobs = torch.log_softmax(out.logits[0, :-1, :].float(), dim=-1)
                picked = logprobs.gather(1, torch.tensor(prompt_ids[1:]).unsqueeze(1)).squeeze(1).tolist()
                texts = [self.tokenizer.decode([i]) for i in prompt_ids]
                prefill = [PrefillToken(prompt_ids[0], texts[0], None)] + [
                    PrefillToken(i, t, lp) for i, t, lp in zip(prompt_ids[1:], texts[1:], picked, strict=True)
                ]
        return logits, out.past_key_values, prefill

    def _step(self, token_id: int, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([[token_id]]), past_key_values=cache, use_cache=True)
        logits: torch.Tensor = out.logits[0, -1, :].float()
        return logits


class _Sampler:
    """Applies penalties and warpers to next-token logits (TGI's order) and picks a token."""

    def __init__(self, params: GenerationParams, vocab_size: int, prompt_ids: list[int], rng: Any) -> None:
        self.params = params
        self.rng = rng
        self.seen = torch.tensor(prompt_ids, dtype=torch.long)
        self.counts = torch.zeros(vocab_size)

    def choose(self, logits: torch.Tensor) -> tuple[int, float]:
        """Return (token id, its logprob under the processed distribution); updates the penalty state."""
        p = self.params
        scores = logits.clone()
        with torch.inference_mode():
            if p.repetition_penalty is not None and p.repetition_penalty != 1.0:
                seen = torch.unique(self.seen)
                picked = scores[seen]
                scores[seen] = torch.where(
                    picked < 0, picked * p.repetition_penalty, picked / p.repetition_penalty
                )
            if p.frequency_penalty:
                scores -= p.frequency_penalty * self.counts
            if p.presence_penalty:
                scores -= p.presence_penalty * (self.counts > 0).float()
            if p.sampling:
                scores = self._warp(scores)
                logprobs = torch.log_softmax(scores, dim=-1)
                token_id = int(torch.multinomial(logprobs.exp(), 1, generator=self.rng).item())
            else:
                logprobs = torch.log_softmax(scores, dim=-1)
                token_id = int(torch.argmax(scores).item())
        self.seen = torch.cat([self.seen, torch.tensor([token_id])])
        self.counts[token_id] += 1
        # Finite: the chosen token always has a non-zero probability under the processed scores.
        return token_id, float(logprobs[token_id].item())

    def _warp(self, scores: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.temperature is not None and p.temperature != 1.0:
            scores = scores / p.temperature
        if p.top_k:
            kth = torch.topk(scores, min(p.top_k, scores.shape[0])).values[-1]
            scores = scores.masked_fill(scores < kth, -math.inf)
        if p.top_p is not None and p.top_p < 1.0:
            scores = _nucleus(scores, p.top_p)
        if p.typical_p is not None and p.typical_p < 1.0:
            scores = _typical(scores, p.typical_p)
        return scores


def _nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``top_p``."""
    sorted_scores, order = torch.sort(scores, descending=True)
    cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
    # Drop a token when the tokens before it already reach top_p (the first is always kept).
    drop_sorted = (cumulative - torch.softmax(sorted_scores, dim=-1)) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return scores.masked_fill(drop, -math.inf)


def _typical(scores: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling: keep tokens whose surprise is closest to the entropy, up to ``mass``."""
    logprobs = torch.log_softmax(scores, dim=-1)
    probs = logprobs.exp()
    entropy = -(torch.nan_to_num(probs * logprobs)).sum()
    deviation = (-logprobs - entropy).abs()
    _, order = torch.sort(deviation)
    cumulative = probs[order].cumsum(dim=-1)
    drop_sorted = (cumulative - probs[order]) >= mass
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return scores.masked_fill(drop, -math.inf)
