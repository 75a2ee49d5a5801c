"""Retrieval and grounding metrics: pure functions of ids and text, plus a bootstrap aggregate.

Ranking metrics take ``ranked`` (doc ids, best first, as a retriever returned them) and
``relevant`` (the labelled doc ids, binary relevance). A chunk-level retriever may return the same
document several times; ranking metrics judge *documents*, so they keep only the first occurrence
of each id before cutting at ``k``. :func:`context_precision` judges *contexts* (what a generator is
shown), so there every occurrence counts.

Every per-query metric lies in [0, 1]. ``k`` must be >= 1 and ``relevant`` non-empty, else
``ValueError``: a query without a label cannot be scored and must not silently count as 0 or 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from serving.eval.text import content_words, sentences

EmbedFn = Callable[[Sequence[str]], npt.ArrayLike]
"""Texts -> an ``(n, dim)`` array of embeddings (normalised or not: cosines are computed here)."""

# Citation markers such as "[1]", "[doc-3]" or "[debian-faq/kernel#modules]" are not claims.
_CITATION = re.compile(r"\[[^\[\]\n]{1,80}\]")


def _check(relevant: Collection[str], k: int | None) -> None:
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not relevant:
        raise ValueError("relevant must name at least one document")


def first_occurrences(ranked: Iterable[str]) -> list[str]:
    """``ranked`` with repeated ids removed, keeping each id at its best (first) rank."""
    return list(dict.fromkeys(ranked))


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """|relevant ∩ top-k documents| / |relevant|."""
    _check(relevant, k)
    top = set(first_occurrences(ranked)[:k])
    return len(top & set(relevant)) / len(set(relevant))


def reciprocal_rank_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 / rank of the first relevant document within the top k (ranks start at 1), else 0.

    Its mean over queries is MRR@k.
    """
    _check(relevant, k)
    wanted = set(relevant)
    for rank, doc_id in enumerate(first_occurrences(ranked)[:k], start=1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary-relevance nDCG@k: DCG / ideal DCG.

    DCG = sum over the top-k documents at rank i (from 1) of rel_i / log2(i + 1), rel_i in {0, 1};
    the ideal DCG puts min(|relevant|, k) relevant documents at ranks 1, 2, ...
    """
    _check(relevant, k)
    wanted = set(relevant)
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, doc_id in enumerate(first_occurrences(ranked)[:k], start=1)
        if doc_id in wanted
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


def context_precision(
    context_doc_ids: Sequence[str], relevant: Collection[str], k: int | None = None
) -> float:
    """Fraction of the contexts given to the generator that come from a relevant document.

    ``context_doc_ids`` holds the source doc id of each context (chunk) in prompt order, repeats
    included: two chunks of one relevant document are two relevant contexts, two chunks of an
    irrelevant one waste two slots. Only the first ``k`` contexts count when ``k`` is given. The
    value is (relevant contexts) / (contexts counted); with no context at all it is 0.0, since an
    empty context supports nothing.
    """
    _check(relevant, k)
    counted = list(context_doc_ids if k is None else context_doc_ids[:k])
    if not counted:
        return 0.0
    wanted = set(relevant)
    return sum(1 for doc_id in counted if doc_id in wanted) / len(counted)


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    """How one answer sentence fared: best lexical overlap and best cosine over the cited text."""

    sentence: str
    supported: bool
    overlap: float
    cosine: float | None
    """``None`` when no embed function was given."""


@dataclass(frozen=True, slots=True)
class AnswerSupport:
    """``score`` = supported / checked sentences (0.0 when none could be checked)."""

    score: float
    supported: int
    checked: int
    sentences: list[SentenceSupport]


def lexical_overlap(claim: str, context: str) -> float:
    """Share of the distinct content words of ``claim`` that also occur in ``context`` (0.0 if none)."""
    claimed = set(content_words(claim))
    if not claimed:
        return 0.0
    return len(claimed & set(content_words(context))) / len(claimed)


def answer_support(
    answer: str,
    cited_contexts: Sequence[str],
    *,
    overlap_threshold: float = 0.6,
    min_content_words: int = 2,
    embed: EmbedFn | None = None,
    cosine_threshold: float = 0.7,
) -> AnswerSupport:
    """Judge-free grounding: the fraction of answer sentences supported by the cited contexts.

    The answer is split into sentences (:func:`serving.eval.text.sentences`) after removing
    citation markers in square brackets. A sentence is *checked* when it has at least
    ``min_content_words`` distinct content words (non-stopwords of two or more characters); shorter
    ones ("Yes.", "See below:") carry no checkable claim and are left out of both counts.

    A checked sentence is *supported* when either

    * lexically: for some cited context, ``lexical_overlap(sentence, context) >=
      overlap_threshold``, i.e. that share of its content words appear in one single context; or
    * semantically (only when ``embed`` is given): its cosine similarity to some sentence of some
      cited context is ``>= cosine_threshold``.

    ``score`` is supported / checked, and 0.0 when nothing was checked or nothing was cited. The
    thresholds are conventions, not calibrated truths: compare scores only at equal settings.
    """
    claims = [
        s for s in sentences(_CITATION.sub(" ", answer)) if len(set(content_words(s))) >= min_content_words
    ]
    if not claims:
        return AnswerSupport(0.0, 0, 0, [])
    overlaps = [max((lexical_overlap(c, ctx) for ctx in cited_contexts), default=0.0) for c in claims]
    cosines = _best_cosines(claims, cited_contexts, embed) if embed is not None else None
    judged = [
        SentenceSupport(
            sentence=claim,
            supported=overlaps[i] >= overlap_threshold
            or (cosines is not None and cosines[i] >= cosine_threshold),
            overlap=overlaps[i],
            cosine=None if cosines is None else cosines[i],
        )
        for i, claim in enumerate(claims)
    ]
    supported = sum(1 for s in judged if s.supported)
    return AnswerSupport(supported / len(judged), supported, len(judged), judged)


def _best_cosines(claims: list[str], contexts: Sequence[str], embed: EmbedFn) -> list[float]:
    """For each claim, the highest cosine to any sentence of any context (-1.0 with no context)."""
    pieces = [s for ctx in contexts for s in sentences(ctx)]
    if not pieces:
        return [-1.0] * len(claims)
    vectors = _unit_rows(np.asarray(embed([*claims, *pieces]), dtype=np.float64))
    sims = vectors[: len(claims)] @ vectors[len(claims) :].T
    return [float(v) for v in sims.max(axis=1)]


def _unit_rows(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0.0, 1.0, norms)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean over ``n`` queries with a percentile-bootstrap confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def mean_ci(
    values: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap CI (``n_boot`` resamples, seeded).

    Resamples queries with replacement, so the interval reflects which queries happened to be in
    the set, not noise inside a query. Deterministic for a given ``seed``. ``ValueError`` on an
    empty input or a confidence outside (0, 1).
    """
    if not values:
        raise ValueError("cannot aggregate an empty list of values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    block = max(1, 2_000_000 // data.size)  # bound memory: at most ~2M sampled indices at once
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        means[start:stop] = data[rng.integers(0, data.size, size=(stop - start, data.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(float(data.mean()), float(low), float(high), int(data.size))
