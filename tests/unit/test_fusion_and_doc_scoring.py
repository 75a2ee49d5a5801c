"""Score fusion (RRF, min-max, DBSF) and document scoring by the sum of a document's best chunks."""

from __future__ import annotations

import pytest

from serving.retrieval.search import Candidate, by_document_sum, fuse


def test_dbsf_maps_each_list_by_its_mean_and_three_deviations() -> None:
    import numpy as np

    dense = [("a", 0.9), ("b", 0.6), ("c", 0.5), ("d", 0.2)]
    sparse = [("c", 8.0), ("e", 2.0)]
    out = dict(fuse([dense, sparse], [0.7, 0.3], method="dbsf"))

    def norm(items: list[tuple[str, float]]) -> dict[str, float]:
        s = np.array([v for _, v in items])
        lo, hi = s.mean() - 3 * s.std(), s.mean() + 3 * s.std()
        return {k: float(np.clip((v - lo) / (hi - lo), 0, 1)) for k, v in items}

    d, sp = norm(dense), norm(sparse)
    expected = {k: 0.7 * d.get(k, 0.0) + 0.3 * sp.get(k, 0.0) for k in {*d, *sp}}
    assert out == pytest.approx(expected)
    assert list(out) == sorted(expected, key=lambda k: -expected[k])


def test_fusion_weights_and_ties() -> None:
    assert [pid for pid, _ in fuse([[("x", 0.9), ("y", 0.1)], [("y", 5.0)]], [1.0, 0.0], "dbsf")] == [
        "x",
        "y",
    ]
    assert fuse([[("b", 1.0), ("a", 1.0)]], [1.0], "weighted") == [("a", 1.0), ("b", 1.0)]  # ties by id
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse([[("a", 1.0)]], [1.0], "mean")


def _c(pid: str, doc: str, score: float) -> Candidate:
    return Candidate(pid, "t", doc, 1, score, score)


def test_a_document_with_two_good_chunks_beats_one_with_a_single_better_chunk() -> None:
    ranked = [_c("a1", "A", 0.9), _c("b1", "B", 0.8), _c("b2", "B", 0.7), _c("a2", "A", 0.1)]
    out = by_document_sum(ranked, 2)
    assert [c.point_id for c in out] == ["b1", "b2", "a1", "a2"]  # B: 1.5 > A: 1.0; chunk order kept
    assert [c.point_id for c in by_document_sum(ranked, 1)] == ["a1", "a2", "b1", "b2"]


@pytest.mark.parametrize(
    ("query", "question"),
    [
        ("How do I install Debian?", True),
        ("OK, now I know what Debian is... what is Linux?!", True),
        ("what is a virtual package", True),
        ("Can I mix stable and testing", True),
        ("copy files and directories", False),
        ("Virtual packages - Provides", False),
        ("", False),
    ],
)
def test_questions_are_told_from_keywords_and_headings(query: str, question: bool) -> None:
    from serving.retrieval.search import hybrid_weight_for, looks_like_question

    assert looks_like_question(query) is question
    assert hybrid_weight_for(query, 0.6, 0.9) == (0.9 if question else 0.6)
    assert hybrid_weight_for(query, 0.6, None) == 0.6


@pytest.mark.parametrize(
    "query",
    [
        "Where does the zorbulator2 daemon read its settings from?",
        "How do I resize an ext4 file system?",
        "What does DEB_BUILD_OPTIONS do?",
        "Why does ls -l show a plus sign?",
    ],
)
def test_a_question_naming_an_identifier_keeps_the_lexical_share(query: str) -> None:
    from serving.retrieval.search import has_identifier, hybrid_weight_for, looks_like_question

    assert looks_like_question(query) and has_identifier(query)
    assert hybrid_weight_for(query, 0.6, 0.9) == 0.6
    assert not has_identifier("What is a virtual package in Debian GNU/Linux?")
