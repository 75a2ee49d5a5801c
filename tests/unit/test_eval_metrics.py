"""Hand-computed cases for the evaluation metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from serving.eval.metrics import (
    answer_support,
    context_precision,
    first_occurrences,
    lexical_overlap,
    mean_ci,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)

RANKED = ["a", "r1", "b", "r2"]
RELEVANT = {"r1", "r2"}


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 0.5), (3, 0.5), (4, 1.0), (10, 1.0)])
def test_recall_counts_relevant_documents_in_the_top_k(k: int, expected: float) -> None:
    assert recall_at_k(RANKED, RELEVANT, k) == expected


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_k() -> None:
    assert reciprocal_rank_at_k(RANKED, RELEVANT, 4) == 0.5
    assert reciprocal_rank_at_k(["x", "y", "r"], {"r"}, 3) == pytest.approx(1 / 3)
    assert reciprocal_rank_at_k(["x", "y", "r"], {"r"}, 2) == 0.0


def test_ndcg_discounts_by_log2_of_rank_plus_one() -> None:
    # Relevant at ranks 2 and 4; the ideal ranking has them at ranks 1 and 2.
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(expected)
    assert expected == pytest.approx(0.65092, abs=1e-5)


def test_ndcg_ideal_is_capped_at_k_relevant_documents() -> None:
    # Three relevant documents but k=2: two relevant hits at ranks 1-2 are already ideal.
    assert ndcg_at_k(["r1", "r2", "x"], {"r1", "r2", "r3"}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"r1"}, 2) == 0.0


def test_ranking_metrics_judge_each_document_at_its_first_rank() -> None:
    # A chunk retriever returns doc "a" twice; "r" is the second distinct document.
    ranked = ["a", "a", "r"]
    assert first_occurrences(ranked) == ["a", "r"]
    assert recall_at_k(ranked, {"r"}, 2) == 1.0
    assert reciprocal_rank_at_k(ranked, {"r"}, 2) == 0.5
    assert ndcg_at_k(ranked, {"r"}, 2) == pytest.approx(1 / math.log2(3))


def test_context_precision_counts_every_context_including_repeats() -> None:
    contexts = ["a", "r", "r", "b"]
    assert context_precision(contexts, {"r"}) == 0.5
    assert context_precision(contexts, {"r"}, k=3) == pytest.approx(2 / 3)
    assert context_precision(contexts, {"r"}, k=1) == 0.0
    assert context_precision([], {"r"}) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: recall_at_k(["a"], {"a"}, 0),
        lambda: reciprocal_rank_at_k(["a"], set(), 1),
        lambda: ndcg_at_k(["a"], [], 3),
        lambda: context_precision(["a"], {"a"}, k=0),
    ],
)
def test_unscorable_inputs_raise(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


CONTEXT = "The gzip command reduces the size of the named files using Lempel-Ziv coding (LZ77)."


def test_lexical_overlap_is_the_share_of_claim_content_words_found() -> None:
    # Content words of the claim: gzip, compresses, files, lempel-ziv, coding -> 4 of 5 in CONTEXT.
    assert lexical_overlap("Gzip compresses files with Lempel-Ziv coding.", CONTEXT) == pytest.approx(0.8)
    assert lexical_overlap("The of and.", CONTEXT) == 0.0


def test_answer_support_checks_claims_and_ignores_contentless_sentences() -> None:
    answer = "Gzip compresses files with Lempel-Ziv coding [1]. The moon is made of green cheese. Yes."
    result = answer_support(answer, [CONTEXT, "Unrelated text about printers."])
    assert (result.checked, result.supported, result.score) == (2, 1, 0.5)
    first, second = result.sentences
    assert first.supported and first.overlap == pytest.approx(0.8) and first.cosine is None
    assert not second.supported and second.overlap == 0.0
    assert "[1]" not in first.sentence


def test_answer_support_requires_overlap_within_a_single_context() -> None:
    # Half the words in each context, all of them only across both: not supported at 0.6.
    result = answer_support("Gzip shrinks printers quickly.", ["gzip shrinks", "printers quickly"])
    assert result.sentences[0].overlap == 0.5 and result.score == 0.0


def test_answer_support_is_zero_without_claims_or_citations() -> None:
    assert answer_support("Yes. No.", [CONTEXT]).checked == 0
    assert answer_support("Yes. No.", [CONTEXT]).score == 0.0
    assert answer_support("Gzip compresses files.", []).score == 0.0


def _topic_embed(texts: Sequence[str]) -> np.ndarray:
    """A deterministic two-topic embedding: compression words vs astronomy words (not normalised)."""
    topics = ({"smaller", "shrinks", "size", "reduces"}, {"moon", "planet", "orbit"})
    rows = [[3.0 * sum(w in text.lower() for w in topic) for topic in topics] for text in texts]
    return np.asarray(rows, dtype=np.float64)


def test_answer_support_accepts_semantic_matches_when_an_embedding_is_given() -> None:
    answer = "The archive becomes smaller afterwards. A planet orbits slowly."
    lexical = answer_support(answer, [CONTEXT])
    semantic = answer_support(answer, [CONTEXT], embed=_topic_embed, cosine_threshold=0.9)
    assert lexical.score == 0.0
    assert semantic.score == 0.5
    assert semantic.sentences[0].supported and semantic.sentences[0].cosine == pytest.approx(1.0)
    assert not semantic.sentences[1].supported and semantic.sentences[1].cosine == pytest.approx(0.0)


def test_mean_ci_of_a_constant_is_a_point() -> None:
    estimate = mean_ci([1.0, 1.0, 1.0])
    assert (estimate.mean, estimate.low, estimate.high, estimate.n) == (1.0, 1.0, 1.0, 3)


def test_mean_ci_brackets_the_mean_with_the_normal_width_and_is_seeded() -> None:
    values = [0.0, 1.0] * 50
    estimate = mean_ci(values, seed=7)
    # The standard error of a mean of 100 fair coin flips is 0.05: the 95% CI is about +-0.098.
    assert estimate.mean == 0.5
    assert estimate.low == pytest.approx(0.402, abs=0.03)
    assert estimate.high == pytest.approx(0.598, abs=0.03)
    assert mean_ci(values, seed=7) == estimate


def test_mean_ci_rejects_empty_input_and_bad_confidence() -> None:
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1.0], confidence=1.0)
