"""The API's query encoder: the frozen TorchScript graph gives the eager fp32 model's vectors, in
fp32 and in bf16.

Real model (the packaged MiniLM) and real questions (the eval corpus's Debian FAQ headings and
man page NAME lines).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from serving.eval.corpus import build_corpus
from serving.retrieval.search import QueryEncoder


@pytest.fixture(scope="module")
def encoders() -> tuple[QueryEncoder, QueryEncoder]:
    return QueryEncoder(dtype="fp32"), QueryEncoder(frozen=False, dtype="fp32")


@pytest.fixture(scope="module")
def questions() -> list[str]:
    out = [q.text for q in build_corpus(max_docs=60).queries]
    assert len(out) > 40
    return [*out, "", "apt", "word " * 400]  # empty, one token, longer than the model (truncated alike)


def test_the_default_encoder_is_frozen(encoders: tuple[QueryEncoder, QueryEncoder]) -> None:
    frozen, eager = encoders
    assert frozen._graph is not None and eager._graph is None


def test_frozen_vectors_equal_eager_vectors_on_real_questions(
    encoders: tuple[QueryEncoder, QueryEncoder], questions: list[str]
) -> None:
    frozen, eager = encoders
    a = np.array([frozen.dense(q) for q in questions])
    b = np.array([eager.dense(q) for q in questions])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9999


@pytest.mark.parametrize("frozen", [True, False])
def test_bf16_vectors_agree_with_fp32_on_real_questions(
    encoders: tuple[QueryEncoder, QueryEncoder], questions: list[str], frozen: bool
) -> None:
    bf16 = QueryEncoder(frozen=frozen, dtype="bf16")
    assert (bf16._graph is not None) is frozen
    a = np.array([bf16.dense(q) for q in questions])
    b = np.array([encoders[1].dense(q) for q in questions])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9998  # measured min 0.99989 (the edge cases included)


def test_auto_is_bf16_where_the_cpu_computes_it() -> None:
    from streamrag.sentence_model import cpu_has_bf16

    assert QueryEncoder(frozen=False).dtype == ("bf16" if cpu_has_bf16() else "fp32")


def test_one_tokenisation_gives_the_same_dense_and_sparse_vectors(
    encoders: tuple[QueryEncoder, QueryEncoder],
) -> None:
    questions = [q.text for q in build_corpus(max_docs=40).queries]
    questions += ["", "apt", "word " * 400]  # empty, one token, longer than the model
    for enc in encoders:
        for q in questions:
            dense, sparse = enc.encode(q)
            assert sparse == enc.sparse(q), q
            assert float(np.dot(dense, enc.dense(q))) > 0.99999, q


def test_a_model_that_cannot_be_traced_stays_eager_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing refused")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with caplog.at_level(logging.WARNING, logger="streamrag.serving"):
        enc = QueryEncoder()
    assert enc._graph is None
    assert "stays eager" in caplog.text and "tracing refused" in caplog.text
    assert len(enc.dense("What is Debian?")) == 384
