"""Ranking metrics, the promotion rule and the training batcher (pure logic, numpy)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.dataset import Pair
from training.evaluate import Evaluation, decide, evaluate_vectors, first_relevant_ranks, retrieval_metrics
from training.finetune import batches
from training.settings import TrainingOptions


def unit(*rows: list[float]) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_ranks_count_the_first_relevant_passage_of_the_querys_document() -> None:
    queries = unit([1, 0], [0, 1], [1, 1])
    passages = unit([1, 0.1], [0.1, 1], [1, -0.5], [1, 0.9])
    # q1's document "b" has two passages: the better one (p1) counts. q2 scores p3 > p0 = p1 > p2 ("c").
    ranks = first_relevant_ranks(queries, passages, ["a", "b", "c"], ["a", "b", "c", "b"])
    assert ranks.tolist() == [1, 1, 4]


def test_ties_rank_the_relevant_passage_below_irrelevant_ones() -> None:
    same = unit([1, 0], [1, 0], [1, 0])
    ranks = first_relevant_ranks(same[:1], same, ["x"], ["y", "x", "z"])
    assert ranks.tolist() == [3]  # a collapsed model must not look perfect


def test_a_query_without_a_relevant_passage_is_an_error() -> None:
    with pytest.raises(ValueError, match="relevant"):
        first_relevant_ranks(unit([1, 0]), unit([1, 0]), ["a"], ["b"])


@given(st.lists(st.integers(1, 50), min_size=1, max_size=100))
def test_metrics_match_their_definitions(ranks: list[int]) -> None:
    arr = np.asarray(ranks)
    m = retrieval_metrics(arr, (1, 5))
    assert m["recall_at_1"] == sum(r == 1 for r in ranks) / len(ranks)
    assert m["recall_at_5"] == sum(r <= 5 for r in ranks) / len(ranks)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in ranks) / len(ranks))
    assert 0 < m["mrr"] <= 1 and m["recall_at_1"] <= m["recall_at_5"]


def test_evaluate_vectors_with_a_perfect_and_a_useless_encoder() -> None:
    pairs = [Pair(f"q{i}", f"p{i}", f"t/d{i}", 0, "sentence") for i in range(10)]
    basis = {f"{k}{i}": np.eye(10, dtype=np.float32)[i] for i in range(10) for k in "qp"}
    perfect = evaluate_vectors(lambda texts: np.stack([basis[t] for t in texts]), pairs, (1, 5))
    assert perfect.metrics == {"recall_at_1": 1.0, "recall_at_5": 1.0, "mrr": 1.0}
    assert (perfect.queries, perfect.passages) == (10, 10)
    useless = evaluate_vectors(
        lambda texts: np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3), pairs, (1, 5)
    )
    assert useless.metrics["recall_at_1"] == 0.0 and useless.metrics["mrr"] == pytest.approx(0.1)


def test_promotion_needs_the_margin() -> None:
    opts = TrainingOptions(promote_metric="mrr", promote_margin=0.02)
    cur = Evaluation({"mrr": 0.50, "recall_at_1": 0.4}, 10, 10)
    assert not decide(cur, Evaluation({"mrr": 0.515, "recall_at_1": 0.9}, 10, 10), opts).promote
    win = decide(cur, Evaluation({"mrr": 0.53, "recall_at_1": 0.1}, 10, 10), opts)
    assert win.promote and "beats" in win.reason
    assert not decide(cur, cur, opts).promote


def test_batches_use_every_pair_once_and_never_repeat_a_document() -> None:
    pairs = [
        Pair(f"q{d}-{c}", f"p{d}-{c}", f"t/d{d}", c, "sentence") for d in range(12) for c in range(d % 4 + 1)
    ]
    out = batches(pairs, 8, random.Random(0))
    flat = [p for b in out for p in b]
    assert all(len({p.doc_key for p in b}) == len(b) <= 8 for b in out)
    assert all(len(b) >= 2 for b in out)
    assert len(flat) == len(set(flat)) and len(flat) >= len(pairs) - 3  # only singleton leftovers dropped
    assert out == batches(pairs, 8, random.Random(0))  # seeded


def test_non_finite_embeddings_are_rejected_not_scored() -> None:
    import numpy as np
    import pytest

    from training.dataset import Pair
    from training.evaluate import evaluate_vectors

    pairs = [Pair("q1", "p1", "d1", 0, "title"), Pair("q2", "p2", "d2", 0, "title")]
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_vectors(lambda texts: np.full((len(texts), 4), np.nan), pairs, (1,))
