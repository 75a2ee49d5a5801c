"""Pseudo-query pairs, the document split and the snapshot (pure logic on chunk payloads)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dataset import Chunk, make_pairs, split_pairs, take_snapshot
from training.settings import TrainingOptions

OPTS = TrainingOptions(min_passage_chars=20)
BODY = "Plain words follow here so the passage stays long enough for the minimum. " * 2


def chunk(doc: str, index: int, text: str, title: str = "", version: int = 1, ts: str = "") -> Chunk:
    return Chunk(doc, version, index, title, text, ts or "2026-01-01T00:00:00+00:00")


def test_unique_title_is_the_query_for_the_first_chunk_without_the_title() -> None:
    pairs = make_pairs([chunk("t/a", 0, f"Kafka offsets\n\n{BODY}", title="Kafka offsets")], OPTS)
    assert [(p.kind, p.query) for p in pairs] == [("title", "Kafka offsets")]
    assert not pairs[0].passage.startswith("Kafka offsets")
    assert pairs[0].passage == BODY.strip()


def test_shared_title_falls_back_to_a_sentence() -> None:
    text = f"Chapter\n\nThe broker keeps every partition on disk. {BODY}"
    pairs = make_pairs([chunk("t/a", 0, text, title="Chapter"), chunk("t/b", 0, text, title="Chapter")], OPTS)
    assert {p.kind for p in pairs} == {"sentence"}
    assert {p.query for p in pairs} == {"The broker keeps every partition on disk."}
    assert all("The broker keeps" not in p.passage for p in pairs)


def test_later_chunks_skip_their_leading_fragment_and_the_overlap() -> None:
    first = f"Intro sentence one is here for you. Shared overlap sentence lives in both chunks. {BODY}"
    second = (
        f"both chunks. Shared overlap sentence lives in both chunks. A fresh sentence only here now. {BODY}"
    )
    pairs = make_pairs([chunk("t/a", 0, first), chunk("t/a", 1, second)], OPTS)
    assert [(p.chunk_index, p.query) for p in pairs] == [
        (0, "Intro sentence one is here for you."),
        (1, "A fresh sentence only here now."),
    ]


def test_man_page_syntax_is_not_a_query() -> None:
    text = f"ALIGN := {{ u8 | u16 | u32 }}\nNEEDLE := {{ string | c-escape }}\n{BODY.lower()}"
    assert make_pairs([chunk("t/a", 0, text, title="")], OPTS) == []


def test_only_the_latest_version_and_at_most_max_pairs_per_doc() -> None:
    chunks = [
        chunk("t/a", i, f"fragment {i}. Sentence number {i} is a query here. {BODY}", version=2)
        for i in range(6)
    ]
    chunks.append(chunk("t/a", 0, f"Stale version sentence is not used. {BODY}", version=1))
    pairs = make_pairs(chunks, OPTS.model_copy(update={"max_pairs_per_doc": 3}))
    assert [p.chunk_index for p in pairs] == [0, 1, 2]
    assert all("Stale" not in p.query for p in pairs)


def _doc_chunks(n_docs: int) -> list[Chunk]:
    return [
        chunk(f"t/d{i}", 0, f"Doc {i} opening sentence is right here. {BODY}", title=f"Title {i}")
        for i in range(n_docs)
    ]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), n_docs=st.integers(10, 80))
def test_split_keeps_documents_whole_and_is_deterministic(seed: int, n_docs: int) -> None:
    opts = OPTS.model_copy(
        update={"seed": seed, "max_pairs_per_doc": 1, "max_pairs": 1000, "max_eval_pairs": 1000}
    )
    pairs = make_pairs(_doc_chunks(n_docs), opts)
    train, heldout = split_pairs(pairs, opts)
    assert not {p.doc_key for p in train} & {p.doc_key for p in heldout}
    assert len(train) + len(heldout) == len(pairs)
    assert split_pairs(list(reversed(pairs)), opts) == (train, heldout)  # input order does not matter


def test_split_is_near_the_holdout_fraction_and_caps_apply() -> None:
    opts = OPTS.model_copy(update={"max_pairs_per_doc": 1, "max_pairs": 10_000, "max_eval_pairs": 10_000})
    train, heldout = split_pairs(make_pairs(_doc_chunks(1000), opts), opts)
    assert 0.16 < len(heldout) / 1000 < 0.24
    capped = opts.model_copy(update={"max_pairs": 50, "max_eval_pairs": 7})
    small_train, small_heldout = split_pairs(make_pairs(_doc_chunks(1000), capped), capped)
    assert (len(small_train), len(small_heldout)) == (50, 7)
    assert set(small_train) <= set(train)


def test_snapshot_hash_depends_on_document_versions_only() -> None:
    chunks = [
        chunk("t/a", 0, "x", ts="2026-01-01T00:00:00+00:00"),
        chunk("t/a", 1, "y", ts="2026-01-02T00:00:00+00:00"),
        chunk("t/b", 0, "z", version=3, ts="2026-01-01T12:00:00+00:00"),
    ]
    snap = take_snapshot("c", "c__m", None, chunks, {"g": {"docs:0": 5}})
    expected = hashlib.sha256(b"t/a\x1f1\nt/b\x1f3\n").hexdigest()
    assert (snap.point_count, snap.document_count, snap.docs_sha256) == (3, 2, expected)
    assert snap.max_indexed_ts == "2026-01-02T00:00:00+00:00"
    assert take_snapshot("c", "c__m", None, list(reversed(chunks)), {}).docs_sha256 == expected
    bumped = [*chunks[:2], chunk("t/b", 0, "z", version=4)]
    assert take_snapshot("c", "c__m", None, bumped, {}).docs_sha256 != expected


def test_options_reject_a_promotion_metric_that_is_not_computed() -> None:
    with pytest.raises(ValueError, match="eval_k"):
        TrainingOptions(promote_metric="recall_at_10", eval_k=(1, 5))
