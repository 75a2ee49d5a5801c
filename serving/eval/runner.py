"""Run every labelled query through a search function and report ranking metrics side by side.

The search function is the only coupling to the system under test: ``search(query_text, k)``
returns up to ``k`` doc ids, best first (repeats allowed; metrics keep each id's first rank). So
the same runner scores the baselines of :mod:`serving.eval.baselines` and the real retrieval
variants (dense, hybrid, hybrid + rerank) once they are wrapped as such a function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from serving.eval.metrics import Estimate, mean_ci, ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from serving.eval.schema import Corpus

SearchFn = Callable[[str, int], list[str]]
"""``(query text, k) -> ranked doc ids`` (at most ``k`` of them, best first)."""

METRICS: dict[str, Callable[[Sequence[str], Sequence[str], int], float]] = {
    "recall": recall_at_k,
    "mrr": reciprocal_rank_at_k,
    "ndcg": ndcg_at_k,
}
"""Metric name -> per-query function; reported as ``<name>@<k>`` (mean over queries)."""


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What the search returned for one query, and how long it took."""

    query_id: str
    source: str
    relevant: list[str]
    ranked: list[str]
    latency_ms: float


@dataclass(frozen=True, slots=True)
class RetrievalReport:
    """Metric estimates (``"recall@5"`` -> mean with a bootstrap 95% CI) over ``outcomes``."""

    ks: tuple[int, ...]
    outcomes: list[QueryOutcome]
    metrics: dict[str, Estimate]
    latency_ms_p50: float
    latency_ms_p95: float

    @property
    def n_queries(self) -> int:
        return len(self.outcomes)

    def for_source(self, source: str) -> RetrievalReport:
        """The same report restricted to the queries of one source (``ValueError`` if it has none)."""
        return summarise([o for o in self.outcomes if o.source == source], self.ks)


def summarise(outcomes: list[QueryOutcome], ks: Sequence[int], seed: int = 0) -> RetrievalReport:
    """Aggregate per-query outcomes into a :class:`RetrievalReport` (``ValueError`` when empty)."""
    if not outcomes:
        raise ValueError("no query outcomes to summarise")
    metrics = {
        f"{name}@{k}": mean_ci([fn(o.ranked, o.relevant, k) for o in outcomes], seed=seed)
        for name, fn in METRICS.items()
        for k in ks
    }
    latencies = np.asarray([o.latency_ms for o in outcomes])
    return RetrievalReport(
        ks=tuple(ks),
        outcomes=outcomes,
        metrics=metrics,
        latency_ms_p50=float(np.percentile(latencies, 50)),
        latency_ms_p95=float(np.percentile(latencies, 95)),
    )


def evaluate_retrieval(
    corpus: Corpus, search: SearchFn, ks: Sequence[int] = (1, 5, 10), *, seed: int = 0
) -> RetrievalReport:
    """Run each query of ``corpus`` once through ``search(text, max(ks))`` and score the rankings.

    Latency is wall-clock time per call, measured here. ``seed`` seeds the bootstrap.
    ``ValueError`` when the corpus has no query or a ``k`` is below 1.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be non-empty and >= 1, got {list(ks)}")
    if not corpus.queries:
        raise ValueError("the corpus has no queries to evaluate")
    depth = max(ks)
    outcomes: list[QueryOutcome] = []
    for query in corpus.queries:
        started = time.perf_counter()
        ranked = list(search(query.text, depth))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        outcomes.append(
            QueryOutcome(query.query_id, query.source, query.relevant_doc_ids, ranked, elapsed_ms)
        )
    return summarise(outcomes, sorted(set(ks)), seed)


def format_report(reports: dict[str, RetrievalReport], *, with_ci: bool = True) -> str:
    """A plain-text table: one row per metric, one column per variant (``mean [low, high]``)."""
    if not reports:
        return "(no reports)"
    names = list(dict.fromkeys(m for r in reports.values() for m in r.metrics))
    rows: list[list[str]] = [["metric", *reports]]
    rows.append(["queries", *(str(r.n_queries) for r in reports.values())])
    for name in names:
        cells = []
        for report in reports.values():
            estimate = report.metrics.get(name)
            cells.append("-" if estimate is None else str(estimate) if with_ci else f"{estimate.mean:.3f}")
        rows.append([name, *cells])
    rows.append(["latency p50 ms", *(f"{r.latency_ms_p50:.2f}" for r in reports.values())])
    rows.append(["latency p95 ms", *(f"{r.latency_ms_p95:.2f}" for r in reports.values())])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
