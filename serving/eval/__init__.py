"""Offline evaluation: a labelled corpus built from installed Debian text, metrics and a runner.

* :mod:`serving.eval.corpus` builds (and caches) the corpus: Debian FAQ questions and man page
  NAME descriptions, each labelled with the section or page that answers it.
* :mod:`serving.eval.metrics`: recall@k, MRR@k, nDCG@k, context precision, answer support and
  bootstrap confidence intervals.
* :mod:`serving.eval.runner` runs a ``search(query, k) -> doc ids`` function over the corpus and
  prints variants side by side; :mod:`serving.eval.baselines` holds BM25 and dense baselines.

Typical use::

    corpus = build_corpus(max_docs=2000, seed=0)
    report = evaluate_retrieval(corpus, BM25Index(corpus.documents).search)
    print(format_report({"bm25": report}))
"""

from serving.eval.corpus import SOURCES, build_corpus, corpus_stats
from serving.eval.metrics import (
    Estimate,
    answer_support,
    context_precision,
    mean_ci,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from serving.eval.runner import RetrievalReport, SearchFn, evaluate_retrieval, format_report
from serving.eval.schema import Corpus, CorpusError, EvalDocument, EvalQuery, SourceMissingError

__all__ = [
    "SOURCES",
    "Corpus",
    "CorpusError",
    "Estimate",
    "EvalDocument",
    "EvalQuery",
    "RetrievalReport",
    "SearchFn",
    "SourceMissingError",
    "answer_support",
    "build_corpus",
    "context_precision",
    "corpus_stats",
    "evaluate_retrieval",
    "format_report",
    "mean_ci",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
]
