"""The retrieval runner, its report table and the BM25 baseline on a small hand-made corpus."""

from __future__ import annotations

import math

import pytest

from serving.eval.baselines import BM25Index
from serving.eval.runner import evaluate_retrieval, format_report
from serving.eval.schema import Corpus, EvalDocument, EvalQuery

DOCS = [
    EvalDocument("d1", "gzip", "compress or expand files with Lempel-Ziv coding", "t"),
    EvalDocument("d2", "ls", "list directory contents, one entry per line", "t"),
    EvalDocument("d3", "mount", "mount a filesystem on a directory of the tree", "t"),
    EvalDocument("d4", "apt", "install packages and their dependencies from the archive", "u"),
]
QUERIES = [
    EvalQuery("q1", "compress files", ["d1"], "t"),
    EvalQuery("q2", "list a directory", ["d2"], "t"),
    EvalQuery("q3", "install packages", ["d4"], "u"),
]
CORPUS = Corpus(DOCS, QUERIES).check()

# A fixed ranking per query: q1 hit at rank 1, q2 hit at rank 2, q3 missed in the top 3.
FIXED = {
    "compress files": ["d1", "d3", "d2"],
    "list a directory": ["d3", "d2", "d1"],
    "install packages": ["d1", "d2", "d3"],
}


def fixed_search(query: str, k: int) -> list[str]:
    return FIXED[query][:k]


def test_evaluate_retrieval_averages_hand_computed_per_query_values() -> None:
    report = evaluate_retrieval(CORPUS, fixed_search, ks=(1, 3))
    assert report.n_queries == 3
    assert report.metrics["recall@1"].mean == pytest.approx(1 / 3)
    assert report.metrics["recall@3"].mean == pytest.approx(2 / 3)
    assert report.metrics["mrr@3"].mean == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert report.metrics["ndcg@3"].mean == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)
    assert [o.ranked for o in report.outcomes] == list(FIXED.values())
    assert report.latency_ms_p50 >= 0.0


def test_search_is_called_once_per_query_with_the_deepest_k() -> None:
    calls: list[tuple[str, int]] = []

    def recording_search(query: str, k: int) -> list[str]:
        calls.append((query, k))
        return fixed_search(query, k)

    evaluate_retrieval(CORPUS, recording_search, ks=(5, 1, 3))
    assert calls == [(q.text, 5) for q in QUERIES]


def test_report_restricts_to_one_source() -> None:
    report = evaluate_retrieval(CORPUS, fixed_search, ks=(3,))
    only_u = report.for_source("u")
    assert only_u.n_queries == 1 and only_u.metrics["recall@3"].mean == 0.0
    with pytest.raises(ValueError):
        report.for_source("nope")


def test_evaluate_retrieval_rejects_bad_ks_and_empty_corpora() -> None:
    with pytest.raises(ValueError):
        evaluate_retrieval(CORPUS, fixed_search, ks=(0,))
    with pytest.raises(ValueError):
        evaluate_retrieval(Corpus(DOCS, []), fixed_search)


def test_format_report_puts_variants_side_by_side() -> None:
    a = evaluate_retrieval(CORPUS, fixed_search, ks=(1, 3))
    b = evaluate_retrieval(CORPUS, BM25Index(DOCS).search, ks=(1, 3))
    table = format_report({"fixed": a, "bm25": b}, with_ci=False).splitlines()
    assert table[0].split() == ["metric", "fixed", "bm25"]
    assert table[2].split() == ["queries", "3", "3"]
    assert "recall@3 0.667 1.000" in [" ".join(line.split()) for line in table]
    assert "[" in format_report({"fixed": a})  # confidence intervals by default


def test_bm25_ranks_the_document_sharing_rare_terms_first() -> None:
    index = BM25Index(DOCS)
    assert index.search("compress files", 2)[0] == "d1"
    # Equal tf and idf: the shorter document (d3: 5 content words vs d2: 6) ranks first.
    assert index.search("directory", 4) == ["d3", "d2"]
    assert index.search("nothing matches zebra", 3) == []
    # A term in one document is rarer, hence worth more, than a term in two.
    assert index.idf("gzip") > index.idf("directory") > 0.0


def test_bm25_prefers_the_shorter_document_at_equal_term_frequency() -> None:
    docs = [
        EvalDocument("long", "", "kernel " + "padding words " * 20, "t"),
        EvalDocument("short", "", "kernel modules", "t"),
    ]
    assert BM25Index(docs).search("kernel", 2) == ["short", "long"]
