"""The evaluation corpus built from the installed Debian FAQ and man pages, and the baselines on it.

Needs the Debian packages ``debian-faq``, ``manpages``, ``manpages-dev`` and ``groff-base``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.eval import manpages, roff
from serving.eval.baselines import BM25Index, DenseIndex
from serving.eval.corpus import build_corpus, corpus_stats
from serving.eval.runner import evaluate_retrieval, format_report
from serving.eval.schema import Corpus

pytestmark = pytest.mark.slow

MAX_DOCS = 300


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def corpus(cache_dir: Path) -> Corpus:
    return build_corpus(MAX_DOCS, seed=0, cache_dir=cache_dir)


def test_corpus_has_the_requested_size_from_both_sources(corpus: Corpus) -> None:
    stats = corpus_stats(corpus)
    assert stats.documents == MAX_DOCS
    assert set(stats.by_source) == {"debian-faq", "manpages"}
    faq_docs, faq_queries = stats.by_source["debian-faq"]
    man_docs, man_queries = stats.by_source["manpages"]
    assert faq_docs >= 100 and faq_queries >= 100  # the whole FAQ fits in its half
    assert man_docs == MAX_DOCS - faq_docs and man_queries >= 0.8 * man_docs
    assert stats.mean_doc_chars > 500


def test_queries_refer_to_existing_documents_and_ids_are_unique(corpus: Corpus) -> None:
    corpus.check()
    ids = [d.doc_id for d in corpus.documents]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    known = set(ids)
    assert all(q.relevant_doc_ids and set(q.relevant_doc_ids) <= known for q in corpus.queries)
    assert len({q.text.lower() for q in corpus.queries}) == len(corpus.queries)


def test_queries_do_not_give_the_answer_away(corpus: Corpus) -> None:
    by_id = corpus.documents_by_id()
    for query in corpus.queries:
        document = by_id[query.relevant_doc_ids[0]]
        assert query.text.strip().lower() != document.title.strip().lower(), query
        if query.source == "debian-faq":
            assert query.text.lower() not in document.body.lower(), query
            assert "?" in query.text


def test_documents_are_real_text_without_excluded_pages(corpus: Corpus) -> None:
    for doc in corpus.documents:
        assert doc.body.strip() and "\x08" not in doc.body  # no overstrike escapes from the formatter
        assert not doc.title.lower().startswith(("python", "pydoc"))
        if doc.source == "manpages":
            assert len(doc.body) >= manpages.MIN_BODY_CHARS
            assert not doc.body.startswith("NAME")


def test_build_is_deterministic_and_cached(corpus: Corpus, cache_dir: Path) -> None:
    assert len(list(cache_dir.glob("corpus-*"))) == 1
    assert build_corpus(MAX_DOCS, seed=0, cache_dir=cache_dir) == corpus
    assert build_corpus(MAX_DOCS, seed=0, use_cache=False) == corpus
    other = build_corpus(MAX_DOCS, seed=1, use_cache=False)
    assert {d.doc_id for d in other.documents} != {d.doc_id for d in corpus.documents}


def test_roff_fallback_agrees_with_groff_on_real_name_lines() -> None:
    assert roff.groff_available(), "groff (Debian package groff-base) renders the man pages"
    pages = manpages.candidates(manpages.page_files(), seed=0, max_per_family=5)[:40]
    agree = total = 0
    for page in pages:
        source = roff.read_source(page.path)
        if roff.is_alias(roff.decode(source)):
            continue
        by_groff = manpages.split_page(roff.render(source))
        if by_groff is None:
            continue
        by_stripper = manpages.split_page(roff.strip_roff(roff.decode(source)))
        total += 1
        agree += by_stripper is not None and by_stripper[0] == by_groff[0]
    assert total >= 20 and agree >= 0.8 * total


def test_bm25_baseline_is_well_above_chance(corpus: Corpus) -> None:
    report = evaluate_retrieval(corpus, BM25Index(corpus.documents).search)
    print("\n" + format_report({"bm25": report}))
    # Chance recall@10 is 10 / 300 = 0.033.
    assert report.metrics["recall@10"].mean > 0.3
    for source in ("debian-faq", "manpages"):
        assert report.for_source(source).metrics["recall@10"].mean > 0.3


def test_dense_baseline_is_well_above_chance(corpus: Corpus) -> None:
    index = DenseIndex(corpus.documents)
    sample = [q.text for q in corpus.queries[:5]]
    cold = [index.search(text, 10) for text in sample]
    index.warm_queries([q.text for q in corpus.queries])
    assert [index.search(text, 10) for text in sample] == cold  # warming changes speed, not results
    report = evaluate_retrieval(corpus, index.search)
    print("\n" + format_report({"dense": report}))
    assert report.metrics["recall@10"].mean > 0.5
