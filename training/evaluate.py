"""Retrieval quality of an embedding model on held-out pairs, and the promotion rule.

Each held-out query is ranked against every held-out passage by cosine similarity (brute force,
numpy). A passage is relevant when it comes from the query's document: consecutive chunks of a
document overlap, so a sentence-query also appears verbatim in the previous chunk, and counting
that hit as a miss would measure the chunker, not the model.

Metrics (all in [0, 1]): ``recall_at_k`` is the share of queries with a relevant passage in the
top ``k``; ``mrr`` is the mean of ``1 / rank`` of the first relevant passage (full ranking).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.dataset import Pair
from training.settings import TrainingOptions, torch_device


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    """``mrr`` and ``recall_at_<k>`` for each ``k``."""
    queries: int
    passages: int


def first_relevant_ranks(
    query_vecs: np.ndarray, passage_vecs: np.ndarray, query_docs: Sequence[str], passage_docs: Sequence[str]
) -> np.ndarray:
    """1-based rank of the best-ranked relevant passage of each query (vectors L2-normalised).

    Ties are broken against the query (a relevant passage tied with an irrelevant one ranks
    below it), so a model that maps everything to one vector scores badly, not perfectly.
    """
    scores = query_vecs @ passage_vecs.T
    relevant = np.asarray(query_docs)[:, None] == np.asarray(passage_docs)[None, :]
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs a relevant passage among the passages")
    best_relevant = np.where(relevant, scores, -np.inf).max(axis=1)
    # rank = 1 + passages scoring strictly higher + irrelevant passages tying with the best relevant one
    higher = (scores > best_relevant[:, None]).sum(axis=1)
    ties = ((scores == best_relevant[:, None]) & ~relevant).sum(axis=1)
    ranks: np.ndarray = 1 + higher + ties
    return ranks


def retrieval_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    out = {f"recall_at_{k}": float((ranks <= k).mean()) for k in ks}
    out["mrr"] = float((1.0 / ranks).mean())
    return out


def evaluate_vectors(encode: Any, pairs: Sequence[Pair], ks: Sequence[int]) -> Evaluation:
    """Evaluate with ``encode(texts) -> (n, dim)`` unit vectors. Passages are deduplicated by text."""
    if not pairs:
        raise ValueError("no held-out pairs to evaluate on")
    passages: dict[str, str] = {}
    for p in pairs:
        passages.setdefault(p.passage, p.doc_key)
    q = np.asarray(encode([p.query for p in pairs]), dtype=np.float32)
    d = np.asarray(encode(list(passages)), dtype=np.float32)
    if not (np.isfinite(q).all() and np.isfinite(d).all()):
        # A diverged model must never look good: NaN scores would tie and rank "first".
        raise ValueError("the model produced non-finite embeddings (diverged training?)")
    ranks = first_relevant_ranks(q, d, [p.doc_key for p in pairs], list(passages.values()))
    return Evaluation(retrieval_metrics(ranks, ks), len(pairs), len(passages))


def evaluate_model(model_path: Path, pairs: Sequence[Pair], opts: TrainingOptions) -> Evaluation:
    """Load the sentence-transformers model at ``model_path`` (offline) and evaluate it on ``pairs``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device=torch_device(opts.device), local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        out: np.ndarray = model.encode(
            texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return out

    return evaluate_vectors(encode, pairs, opts.eval_k)


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    current: float
    candidate: float
    margin: float

    @property
    def reason(self) -> str:
        verb = "beats" if self.promote else "does not beat"
        return (
            f"candidate {self.metric}={self.candidate:.4f} {verb} current {self.current:.4f} "
            f"+ margin {self.margin:.4f}"
        )


def decide(current: Evaluation, candidate: Evaluation, opts: TrainingOptions) -> Decision:
    """Promote only when the candidate is better by at least the margin on the promotion metric."""
    metric = opts.promote_metric
    cur, cand = current.metrics[metric], candidate.metrics[metric]
    return Decision(cand >= cur + opts.promote_margin, metric, cur, cand, opts.promote_margin)
