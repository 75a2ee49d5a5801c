"""The retriever's two reads, on both real engines (Qdrant Edge and a Qdrant server) with the same
assertions: ranked candidates carry only the fields that ranking reads, and the chunks returned are
then read whole. What changes in between (a delete, a rewrite) never makes a result stale, short or
another tenant's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from serving.retrieval.search import RANK_FIELDS, Candidate, Retriever, rank, tenant_filter
from streamrag.contracts import IndexSchema as S
from streamrag.store import CollectionSpec, Point, SparseVector, VectorStore

COLL = "chunks"


def chunk(tenant: str, doc: str, version: int, index: int, text: str) -> dict[str, Any]:
    return {
        S.TENANT: tenant,
        S.DOC_ID: doc,
        S.VERSION: version,
        S.CHUNK_INDEX: index,
        S.TEXT: text,
        S.SOURCE_TS: "2026-11-22T00:00:00+00:00",
        S.INDEXED_TS: "2026-11-22T00:00:01+00:00",
    }


def pid(tenant: str, doc: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{doc}/{index}"))


@pytest.fixture
def client(store_factory: Any) -> Iterator[VectorStore]:
    store, _ = store_factory()
    global COLL
    COLL = f"chunks{uuid.uuid4().hex[:8]}"  # a fresh collection on the session's server too
    store.ensure_collection(
        COLL, CollectionSpec(dense={S.DENSE: 2}, sparse=[S.SPARSE], keyword_indexes=[S.TENANT])
    )
    yield store


def put(client: VectorStore, payload: dict[str, Any], vector: list[float]) -> str:
    point_id = pid(payload[S.TENANT], payload[S.DOC_ID], payload[S.CHUNK_INDEX])
    client.upsert(COLL, [Point(point_id, {S.DENSE: vector}, payload)])
    return point_id


def candidate(point_id: str, payload: dict[str, Any], score: float) -> Candidate:
    return Candidate(point_id, payload[S.TENANT], payload[S.DOC_ID], payload[S.VERSION], score, score)


def test_candidates_carry_the_rank_fields_and_rank_keeps_each_documents_latest(
    client: VectorStore,
) -> None:
    put(client, chunk("t", "a", 1, 0, "old a"), [1.0, 0.0])
    put(client, chunk("t", "a", 2, 1, "new a"), [0.9, 0.1])
    put(client, chunk("t", "b", 1, 0, "b"), [0.5, 0.5])
    put(client, chunk("u", "c", 1, 0, "another tenant"), [1.0, 0.0])
    retriever = Retriever(client, COLL, encoder=None)  # type: ignore[arg-type]
    dense, sparse = retriever.shortlist(COLL, [1.0, 0.0], ([], []), tenant_filter("t"), k=5)
    assert sparse == []  # no query terms: no sparse search
    assert {tuple(sorted(p.payload)) for p in dense} == {tuple(sorted(RANK_FIELDS))}
    ranked = rank(dense, sparse, hybrid_weight=1.0, fusion="weighted")
    assert [(c.doc_id, c.version) for c in ranked] == [("a", 2), ("b", 1)]  # v1's chunk of a is dropped
    hits = retriever.hits(COLL, "t", ranked, want=5)
    assert [(h.doc_id, h.version, h.text) for h in hits] == [("a", 2, "new a"), ("b", 1, "b")]


def test_hits_skip_what_was_deleted_since_ranking_and_read_the_next(client: VectorStore) -> None:
    docs = [chunk("t", f"d{i}", 1, 0, f"text {i}") for i in range(5)]
    ids = [put(client, d, [1.0, float(i)]) for i, d in enumerate(docs)]
    ranked = [candidate(i, d, 1.0 - n / 10) for n, (i, d) in enumerate(zip(ids, docs, strict=True))]
    client.delete(COLL, [ids[0], ids[2]])
    retriever = Retriever(client, COLL, encoder=None)  # type: ignore[arg-type]
    hits = retriever.hits(COLL, "t", ranked, want=3)
    assert [h.doc_id for h in hits] == ["d1", "d3", "d4"]  # still 3, in rank order
    assert [h.score for h in hits] == [0.9, 0.7, 0.6]


def test_hits_return_a_chunk_rewritten_since_ranking_as_it_is_now(client: VectorStore) -> None:
    old = chunk("t", "a", 1, 0, "old text")
    point_id = put(client, old, [1.0, 0.0])
    ranked = [candidate(point_id, old, 0.8)]
    put(client, chunk("t", "a", 2, 0, "new text"), [1.0, 0.0])  # same chunk, next version
    retriever = Retriever(client, COLL, encoder=None)  # type: ignore[arg-type]
    (hit,) = retriever.hits(COLL, "t", ranked, want=1)
    assert (hit.version, hit.text) == (2, "new text")


def test_hits_never_return_another_tenants_point(client: VectorStore) -> None:
    mine, theirs = chunk("t", "a", 1, 0, "mine"), chunk("u", "b", 1, 0, "theirs")
    ids = [put(client, mine, [1.0, 0.0]), put(client, theirs, [1.0, 0.0])]
    # a candidate list that names another tenant's point (it cannot come from a tenant-filtered
    # search; the second read checks anyway)
    ranked = [candidate(ids[1], {**theirs, S.TENANT: "t"}, 0.9), candidate(ids[0], mine, 0.8)]
    retriever = Retriever(client, COLL, encoder=None)  # type: ignore[arg-type]
    assert [h.text for h in retriever.hits(COLL, "t", ranked, want=2)] == ["mine"]


def test_dense_and_sparse_candidates_come_back_in_one_batch_filtered_by_tenant(client: VectorStore) -> None:
    a = put(client, chunk("t", "a", 1, 0, "apt"), [1.0, 0.0])
    client.upsert(
        COLL,
        [
            Point(
                pid("t", "b", 0),
                {S.DENSE: [0.0, 1.0], S.SPARSE: SparseVector([7, 9], [1.0, 2.0])},
                chunk("t", "b", 1, 0, "dpkg"),
            )
        ],
    )
    client.upsert(
        COLL,
        [
            Point(
                pid("u", "c", 0),
                {S.DENSE: [1.0, 0.0], S.SPARSE: SparseVector([9], [5.0])},
                chunk("u", "c", 1, 0, "theirs"),
            )
        ],
    )
    retriever = Retriever(client, COLL, encoder=None)  # type: ignore[arg-type]
    dense, sparse = retriever.shortlist(COLL, [1.0, 0.0], ([9], [1.0]), tenant_filter("t"), k=5)
    assert [p.id for p in dense] == [a, pid("t", "b", 0)]  # cosine order, tenant t only
    assert [p.id for p in sparse] == [pid("t", "b", 0)]  # the only point of t with term 9
    assert dense[0].score == pytest.approx(1.0, abs=1e-5)


def test_the_dense_candidates_are_searched_with_acorn_unless_turned_off() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.requests: list[Any] = []

        def search(self, name: str, requests: list[Any]) -> list[list[Any]]:
            self.requests += requests
            return [[] for _ in requests]

    for acorn in (True, False):
        store = Recorder()
        Retriever(store, COLL, encoder=None, acorn=acorn).shortlist(  # type: ignore[arg-type]
            COLL, [1.0, 0.0], ([3], [1.0]), tenant_filter("t"), k=5
        )
        dense, sparse = store.requests
        assert (dense.using, dense.acorn, sparse.using, sparse.acorn) == (S.DENSE, acorn, S.SPARSE, False)
    store = Recorder()
    Retriever(store, COLL, encoder=None, hnsw_ef=512).shortlist(  # type: ignore[arg-type]
        COLL, [1.0, 0.0], ([3], [1.0]), tenant_filter("t"), k=5
    )
    assert [r.ef for r in store.requests] == [512, None]  # the beam width is the dense search's


def test_the_hnsw_beam_width_setting_reaches_the_dense_search_on_both_engines(client: VectorStore) -> None:
    from streamrag.config import QdrantSettings

    assert QdrantSettings().hnsw_ef is None
    assert QdrantSettings.model_validate({"hnsw_ef": 512}).hnsw_ef == 512
    a = pid("t", "a", 0)
    client.upsert(COLL, [Point(a, {S.DENSE: [1.0, 0.0]}, chunk("t", "a", 1, 0, "alpha"))])
    for ef in (None, 512):
        retriever = Retriever(client, COLL, encoder=None, hnsw_ef=ef)  # type: ignore[arg-type]
        dense, _ = retriever.shortlist(COLL, [1.0, 0.0], ([], []), tenant_filter("t"), k=5, hybrid_weight=1.0)
        assert [p.id for p in dense] == [a]  # the engine takes the beam width and answers


def test_the_grpc_setting_reaches_the_client(store_factory: Any, engine: str) -> None:
    store, _settings = store_factory()
    if engine == "edge":
        pytest.skip("Edge is in-process: no transport")
    assert store.client._client._prefer_grpc is (engine == "server-grpc")
