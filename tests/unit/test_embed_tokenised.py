"""The pipeline's embedder gives sentence-transformers' own vectors: from texts, from the chunker's
token ids, and with the model run as one stream or two at once.

Real model (the packaged MiniLM), real chunker, real text (Debian FAQ sections and man pages).
"""

from __future__ import annotations

import numpy as np
import pytest

from serving.eval.corpus import build_corpus
from streams.chunk import Chunker, ChunkingConfig
from streams.clean import clean_text
from streams.embed import Embedder, even_cuts


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(dtype="fp32", batch_size=8)


def library_vectors(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """The reference: sentence-transformers' own encode on the same model."""
    out: np.ndarray = embedder.model.encode(
        texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def chunks(embedder: Embedder) -> list:  # type: ignore[type-arg]
    chunker = Chunker(embedder.tokenizer, ChunkingConfig(128, 32, 384), embedder.max_tokens)
    docs = build_corpus(max_docs=12).documents
    out = [c for d in docs for c in chunker.chunk(f"{clean_text(d.title)}\n\n{clean_text(d.body)}")]
    assert len(out) > 20 and any(c.token_ids is not None for c in out)
    return out


def test_vectors_from_token_ids_equal_vectors_from_text(embedder: Embedder, chunks: list) -> None:  # type: ignore[type-arg]
    texts = [c.text for c in chunks]
    reference = library_vectors(embedder, texts)
    from_text = embedder.encode(texts)
    from_ids = embedder.encode_tokenised(texts, [c.token_ids for c in chunks])
    for vectors in (from_text, from_ids):
        assert vectors.shape == reference.shape
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(vectors * reference, axis=1))) > 0.99999


def test_streams_share_the_batches_and_keep_the_order(embedder: Embedder, chunks: list) -> None:  # type: ignore[type-arg]
    """One stream or three at once: the same vector in the same row, whatever the batch count
    (fewer texts than streams, fewer than a batch, many batches)."""
    texts = [c.text for c in chunks]
    one = embedder.encode(texts)
    assert embedder.streams >= 1
    three = Embedder(dtype="fp32", batch_size=8, streams=3)
    for n in (1, 2, 5, len(texts)):
        np.testing.assert_allclose(three.encode(texts[:n]), one[:n], atol=1e-5)
    assert three.encode([]).shape == (0, embedder.dim)


def test_calls_from_several_threads_at_once_get_their_own_rows(embedder: Embedder, chunks: list) -> None:  # type: ignore[type-arg]
    """The pipeline's partitions call the embedder at once; the streams interleave their batches,
    and every call still gets exactly its own texts' vectors."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [c.text for c in chunks]
    expected = embedder.encode(texts)
    two = Embedder(dtype="fp32", batch_size=4, streams=2)
    parts = [(b, min(b + 7, len(texts))) for b in range(0, len(texts), 7)]  # calls of 7: 2 batches each
    with ThreadPoolExecutor(4) as callers:
        got = list(callers.map(lambda p: two.encode(texts[p[0] : p[1]]), parts * 3))
    for (b, e), vectors in zip(parts * 3, got, strict=True):
        np.testing.assert_allclose(vectors, expected[b:e], atol=1e-5)


@pytest.mark.parametrize(
    ("n", "batch", "streams", "sizes"),
    [
        (70, 32, 2, [18, 18, 17, 17]),  # not 32, 32, 6: the streams finish together
        (64, 32, 2, [32, 32]),
        (65, 32, 2, [17, 16, 16, 16]),
        (1, 32, 2, [1]),  # fewer rows than streams
        (3, 32, 4, [1, 1, 1]),
        (33, 32, 1, [17, 16]),
        (0, 32, 2, []),
    ],
)
def test_even_cuts(n: int, batch: int, streams: int, sizes: list[int]) -> None:
    cuts = even_cuts(n, batch, streams)
    assert [e - b for b, e in cuts] == sizes
    assert [b for b, _ in cuts] == [0, *(e for _, e in cuts)][: len(cuts)]  # contiguous, in order
    assert sum(e - b for b, e in cuts) == n
    assert all(e - b <= batch for b, e in cuts)


def test_encode_cuts_a_text_longer_than_the_model_as_the_library_does(
    embedder: Embedder, chunks: list
) -> None:  # type: ignore[type-arg]
    long_text = " ".join(c.text for c in chunks[:6])
    assert len(embedder.token_ids(long_text)) > embedder.max_tokens
    got = embedder.encode([long_text, chunks[0].text])
    assert (
        float(np.min(np.sum(got * library_vectors(embedder, [long_text, chunks[0].text]), axis=1))) > 0.99999
    )


def test_texts_without_ids_are_tokenised(embedder: Embedder, chunks: list) -> None:  # type: ignore[type-arg]
    """None (ids unknown) and a mix in one call give the same vectors as ids for every text."""
    texts = [c.text for c in chunks[:10]]
    known = [c.token_ids for c in chunks[:10]]
    mixed = [ids if i % 2 else None for i, ids in enumerate(known)]
    a = embedder.encode_tokenised(texts, known)
    b = embedder.encode_tokenised(texts, mixed)
    c = embedder.encode_tokenised(texts, [None] * len(texts))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    assert embedder.sparse_batch(texts, mixed) == embedder.sparse_batch(texts)


def test_a_text_longer_than_the_model_is_refused_not_cut(embedder: Embedder) -> None:
    too_long = [1000] * (embedder.max_tokens - 1)
    with pytest.raises(ValueError, match="chunk it first"):
        embedder.encode_tokenised(["x"], [too_long])


def test_the_default_embedder_is_a_frozen_graph_and_bf16_agrees_with_fp32(
    embedder: Embedder, chunks: list
) -> None:  # type: ignore[type-arg]
    texts = [c.text for c in chunks]
    assert embedder._graph is not None  # and the tests above compare it with the library's encode
    bf16 = Embedder(dtype="bf16", batch_size=8)
    assert bf16._graph is not None
    assert float(np.min(np.sum(bf16.encode(texts) * library_vectors(embedder, texts), axis=1))) > 0.999


def test_a_model_that_cannot_be_traced_stays_eager_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    chunks: list,  # type: ignore[type-arg]
) -> None:
    import logging

    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing refused")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with caplog.at_level(logging.WARNING, logger="streamrag.streams"):
        eager = Embedder(dtype="fp32", batch_size=8)
    assert eager._graph is None and Embedder(dtype="fp32", frozen=False)._graph is None
    assert "stays eager" in caplog.text and "tracing refused" in caplog.text
    texts = [c.text for c in chunks[:5]]
    assert float(np.min(np.sum(eager.encode(texts) * library_vectors(eager, texts), axis=1))) > 0.99999


def test_the_title_header_is_embedded_with_every_chunk_but_not_stored(embedder: Embedder) -> None:
    from datetime import UTC, datetime

    from streamrag.contracts import DocumentEvent, Op
    from streams import steps
    from streams.batch import PreparedDoc, Sourced, Work

    header = steps.TitleHeader(embedder.tokenizer, 24)
    chunker = Chunker(embedder.tokenizer, ChunkingConfig(128 - 24, 32, 384), embedder.max_tokens - 24)
    doc = next(d for d in build_corpus(max_docs=12).documents if len(d.body) > 3000)
    title = f"{doc.title} " + " ".join(["overlong"] * 40)  # cut to whole words within 24 tokens
    event = DocumentEvent(tenant="t", doc_id="d", version=1, op=Op.UPSERT, title=title, body=doc.body,
                          source_ts=datetime.now(UTC))  # fmt: skip
    src = Sourced(event, "x", 0, 0)
    work = Work("x", 0, 1, 1, docs=(PreparedDoc(src, title=title, body=clean_text(doc.body)),))
    chunks = steps.chunk(work, chunker, header).docs[0].chunks
    head, head_ids = header.cut(title)
    assert len(chunks) > 2 and len(head_ids) <= 24 and title.startswith(head) and head.endswith("overlong")
    assert all(c.header == head and c.text in clean_text(doc.body) for c in chunks)  # text: the body's slice
    texts = [c.embedded_text for c in chunks]
    assert all(t.startswith(head + "\n") for t in texts)
    ids = [c.embedded_ids for c in chunks]
    assert all(i is not None for i in ids)
    assert [list(i) for i in ids if i is not None] == embedder.complete_ids(texts)  # no second tokenisation
    assert max(len(i) for i in ids if i is not None) <= embedder.max_tokens - 2  # nothing truncated
    np.testing.assert_allclose(
        steps.embed(steps.chunk(work, chunker, header), embedder).docs[0].chunks[0].dense,
        library_vectors(embedder, texts[:1])[0], atol=2e-5,
    )  # fmt: skip
