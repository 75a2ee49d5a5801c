"""Corpus invariants, JSONL round trip and statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.eval.schema import Corpus, CorpusError, EvalDocument, EvalQuery, corpus_stats


def _corpus() -> Corpus:
    return Corpus(
        documents=[
            EvalDocument("faq/a", "Chapter", "x" * 10, "debian-faq"),
            EvalDocument("man/b", "b\u00e9", "y" * 20, "manpages"),
        ],
        queries=[EvalQuery("q:faq/a", "What is a?", ["faq/a"], "debian-faq")],
    )


def test_jsonl_round_trip_preserves_everything(tmp_path: Path) -> None:
    corpus = _corpus()
    corpus.save_jsonl(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["documents.jsonl", "queries.jsonl"]
    assert Corpus.load_jsonl(tmp_path / "c") == corpus


def test_loading_something_that_is_not_a_corpus_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not hold a readable corpus"):
        Corpus.load_jsonl(tmp_path)
    (tmp_path / "documents.jsonl").write_text('{"doc_id": "a"}\n')
    (tmp_path / "queries.jsonl").write_text("")
    with pytest.raises(CorpusError):
        Corpus.load_jsonl(tmp_path)


@pytest.mark.parametrize(
    ("documents", "queries", "message"),
    [
        ([EvalDocument("a", "t", "b", "s")] * 2, [], "duplicate doc_id 'a'"),
        ([EvalDocument("a", "t", "b", "s")], [EvalQuery("q", "?", [], "s")], "no relevant document"),
        ([EvalDocument("a", "t", "b", "s")], [EvalQuery("q", "?", ["zz"], "s")], "unknown documents"),
        ([EvalDocument("a", "t", "b", "s")], [EvalQuery("q", "?", ["a"], "s")] * 2, "duplicate query_id"),
    ],
)
def test_check_names_the_broken_invariant(
    documents: list[EvalDocument], queries: list[EvalQuery], message: str
) -> None:
    with pytest.raises(CorpusError, match=message):
        Corpus(documents, queries).check()


def test_corpus_stats_counts_title_and_body_characters() -> None:
    stats = corpus_stats(_corpus())
    assert (stats.documents, stats.queries) == (2, 1)
    assert stats.total_chars == (7 + 10) + (2 + 20)
    assert stats.mean_doc_chars == pytest.approx(19.5)
    assert stats.by_source == {"debian-faq": (1, 1), "manpages": (1, 0)}
    assert corpus_stats(Corpus([], [])).mean_doc_chars == 0.0


def test_head_keeps_the_first_documents_and_only_the_queries_they_answer() -> None:
    corpus = Corpus(
        documents=[
            EvalDocument("faq/a", "A", "a", "debian-faq"),
            EvalDocument("faq/b", "B", "b", "debian-faq"),
            EvalDocument("man/c", "C", "c", "manpages"),
        ],
        queries=[
            EvalQuery("q1", "a or c?", ["faq/a", "man/c"], "debian-faq"),
            EvalQuery("q2", "c?", ["man/c"], "manpages"),
            EvalQuery("q3", "b?", ["faq/b"], "debian-faq"),
        ],
    )
    head = corpus.head(2).check()
    assert [d.doc_id for d in head.documents] == ["faq/a", "faq/b"]
    assert [(q.query_id, q.relevant_doc_ids) for q in head.queries] == [("q1", ["faq/a"]), ("q3", ["faq/b"])]
    assert corpus.head(10) == corpus
