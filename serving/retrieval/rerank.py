"""Pluggable rerankers: ``rerank(query, hits) -> hits`` (best first).

* :class:`CrossEncoderReranker`: a sentence-transformers cross-encoder from a local folder, when
  the operator has one (none ships its weights on PyPI, so there is no default).
* :class:`ParentEmbeddingReranker`: the best that works offline here: re-scores each candidate
  by the cosine of the query to its title + parent section (more context than the matched
  chunk), fused by reciprocal rank with the first-stage order. Measured by ``make eval``; the
  API keeps reranking off by default unless that evaluation shows a gain.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from serving.retrieval.search import Hit, fuse


class CrossEncoderReranker:
    def __init__(self, path: Path) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(path), device="cpu", local_files_only=True)

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self.model.predict([(query, f"{h.title}\n{h.parent_text}") for h in hits])
        order = np.argsort(-np.asarray(scores), kind="stable")
        return [replace(hits[i], score=float(scores[i])) for i in order]


class ParentEmbeddingReranker:
    def __init__(self, model: Any, weight: float = 0.5) -> None:
        self.model = model
        self.weight = weight

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        texts = [query] + [f"{h.title}\n{h.parent_text}" for h in hits]
        vecs = self.model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        cos = vecs[1:] @ vecs[0]
        ids = [h.point_id for h in hits]
        first = [(pid, 0.0) for pid in ids]
        second = [(ids[i], float(cos[i])) for i in np.argsort(-cos, kind="stable")]
        by_id = {h.point_id: h for h in hits}
        return [
            replace(by_id[pid], score=s) for pid, s in fuse([first, second], [1 - self.weight, self.weight])
        ]


def build_reranker(path: Path | None, encoder_model: Any) -> Any:
    """A cross-encoder when a local one is configured, else the parent-embedding reranker."""
    return CrossEncoderReranker(path) if path is not None else ParentEmbeddingReranker(encoder_model)
