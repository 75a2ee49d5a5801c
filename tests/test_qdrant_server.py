"""The development Qdrant stand-in (:mod:`stack.qdrant_server`) through the real remote client.

The app serves an embedded store over Qdrant's REST API. These tests drive it with
``QdrantClient(url=...)``, the client streamrag uses against a Qdrant server, and check that

* every call streamrag makes answers what the embedded client answers on the same store
  (collections, payload indexes, aliases, upsert, delete by id and by filter, scroll, count,
  retrieve, dense and sparse queries with filters);
* the index store's own operations (ensure, replace a document's chunk set, latest versions,
  the chunk index) work through it unchanged;
* errors come back in Qdrant's format: a missing collection is 404, a malformed body 400, a call
  it does not serve 404 naming itself, and a wrong API key 401.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from stack.qdrant_server import build_app
from streamrag.embedded_qdrant import EmbeddedClient
from tests.utils.net import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")

DIM = 8


class Served:
    def __init__(self, path: Path, api_key: str | None = None) -> None:
        self.inner = EmbeddedClient(QdrantClient(path=str(path), force_disable_check_same_thread=True))
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(build_app(self.inner, "1.20.0", api_key), port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.inner.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path / "q")
    yield s
    s.close()


def _points(rng: np.random.Generator, n: int) -> list[qm.PointStruct]:
    return [
        qm.PointStruct(
            id=str(uuid.UUID(int=int(rng.integers(0, 2**63)))),
            vector={
                "dense": rng.normal(size=DIM).astype(float).tolist(),
                "sparse": _sparse(rng),
            },
            payload={"doc": f"d{i % 5}", "tenant": "t1" if i % 3 else "t2", "i": i},
        )
        for i in range(n)
    ]


def _sparse(rng: np.random.Generator) -> qm.SparseVector:
    terms = sorted({int(t) for t in rng.integers(0, 30, size=4)})
    return qm.SparseVector(indices=terms, values=[float(v) for v in rng.uniform(0.1, 1, len(terms))])


def _where(**match: Any) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key=k, match=qm.MatchValue(value=v)) for k, v in match.items()])


def _ids(points: list[Any]) -> list[str]:
    return [str(p.id) for p in points]


def test_the_calls_streamrag_makes_answer_as_the_embedded_client(served: Served) -> None:
    remote = QdrantClient(url=served.url)
    rng = np.random.default_rng(7)
    assert not remote.collection_exists("c")
    assert remote.create_collection(
        "c",
        vectors_config={"dense": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"sparse": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
    )
    remote.create_payload_index("c", "doc", qm.PayloadSchemaType.KEYWORD)
    assert remote.collection_exists("c") and served.inner.collection_exists("c")
    points = _points(rng, 40)
    assert remote.upsert("c", points=points, wait=True).status == qm.UpdateStatus.COMPLETED
    assert remote.count("c").count == served.inner.count("c").count == 40

    # Deletes by filter and by id, then an in-place update of a survivor's payload and vectors.
    remote.delete("c", points_selector=qm.FilterSelector(filter=_where(doc="d0")), wait=True)
    remote.delete("c", points_selector=qm.PointIdsList(points=[points[1].id]), wait=True)
    changed = points[2].model_copy(update={"payload": {**(points[2].payload or {}), "doc": "d9"}})
    remote.upsert("c", points=[changed], wait=True)
    assert remote.count("c").count == served.inner.count("c").count == 40 - 8 - 1

    for flt in (None, _where(tenant="t1"), _where(doc="d9")):
        assert remote.count("c", count_filter=flt).count == served.inner.count("c", count_filter=flt).count
        dense = rng.normal(size=DIM).astype(float).tolist()
        sparse = _sparse(rng)
        for (query, using), payload in itertools.product(
            ((dense, "dense"), (sparse, "sparse")), (True, False, ["tenant", "i", "absent"])
        ):
            got = remote.query_points(
                "c", query=query, using=using, query_filter=flt, limit=7, with_payload=payload
            )
            want = served.inner.query_points(
                "c", query=query, using=using, query_filter=flt, limit=7, with_payload=payload
            )
            assert len(got.points) == 7 or flt is not None
            assert _ids(got.points) == _ids(want.points)
            assert [p.payload for p in got.points] == [p.payload for p in want.points]
            assert np.allclose([p.score for p in got.points], [p.score for p in want.points])

    # A batch (the retriever asks for its dense and sparse candidates in one request) answers as
    # its searches one by one; and the retriever's candidates are the same through either client.
    from serving.retrieval.search import Retriever

    for flt in (None, _where(tenant="t1")):
        dense, sparse = rng.normal(size=DIM).astype(float).tolist(), _sparse(rng)
        requests = [
            qm.QueryRequest(query=dense, using="dense", filter=flt, limit=6, with_payload=["i"]),
            qm.QueryRequest(query=sparse, using="sparse", filter=flt, limit=6, with_payload=True),
        ]
        got_batch = remote.query_batch_points("c", requests=requests)
        want_batch = served.inner.query_batch_points("c", requests=requests)
        assert [_ids(r.points) for r in got_batch] == [_ids(r.points) for r in want_batch]
        assert [[p.payload for p in r.points] for r in got_batch] == [
            [p.payload for p in r.points] for r in want_batch
        ]
        assert all(_ids(r.points) for r in got_batch)
        shortlists = [
            Retriever(c, "c", encoder=None, candidates=6).shortlist(  # type: ignore[arg-type]
                "c", dense, (list(sparse.indices), list(sparse.values)), flt, 1
            )
            for c in (remote, served.inner)
        ]
        assert [[(s.id, s.payload) for s in side] for side in shortlists[0]] == [
            [(s.id, s.payload) for s in side] for side in shortlists[1]
        ]
        assert np.allclose(
            [s.score for side in shortlists[0] for s in side],
            [s.score for side in shortlists[1] for s in side],
        )

    # Anything but a plain nearest search takes local mode's general path: the same answers too.
    dense = rng.normal(size=DIM).astype(float).tolist()
    for extra in ({"offset": 3}, {"score_threshold": 0.1}):
        got = remote.query_points("c", query=dense, using="dense", limit=5, with_payload=True, **extra)
        want = served.inner.query_points("c", query=dense, using="dense", limit=5, with_payload=True, **extra)
        assert _ids(got.points) == _ids(want.points) and got.points

    # Scroll pages through everything exactly once, as the index store reads a document's chunks.
    seen: list[str] = []
    offset = None
    while True:
        page, offset = remote.scroll("c", limit=6, offset=offset, with_payload=True)
        seen.extend(_ids(page))
        if offset is None:
            break
    everything, _ = served.inner.scroll("c", limit=1000)
    assert sorted(seen) == sorted(_ids(everything)) and len(seen) == len(set(seen))

    records = remote.retrieve("c", ids=[points[2].id, points[1].id], with_payload=True)
    assert _ids(records) == [str(points[2].id)] and records[0].payload and records[0].payload["doc"] == "d9"

    remote.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name="c", alias_name="live"))
        ]
    )
    assert [(a.alias_name, a.collection_name) for a in remote.get_aliases().aliases] == [("live", "c")]
    assert remote.count("live").count == 31


def _client(served: Served) -> QdrantClient:
    """A remote client without qdrant-client's version check: a background request that warns
    if the server stops first (short tests; the calls themselves are the same)."""
    return QdrantClient(url=served.url, check_compatibility=False)


class _Stale:
    """A client whose first answer to each existence question is the one from just before another
    process created everything: the race of two pipeline processes starting together."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._asked: set[str] = set()

    def _first(self, question: str) -> bool:
        first = question not in self._asked
        self._asked.add(question)
        return first

    def collection_exists(self, name: str) -> bool:
        return False if self._first(name) else bool(self._client.collection_exists(name))

    def get_aliases(self) -> Any:
        if self._first("aliases"):
            return qm.CollectionsAliasesResponse(aliases=[])
        return self._client.get_aliases()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_ensure_is_safe_when_another_process_creates_the_same_collections(served: Served) -> None:
    from streams.index_store import IndexStore

    IndexStore(_client(served), "c", "m1", DIM, "model").ensure()
    # a second process checked before the first created anything: its creations answer 409
    late = IndexStore(_Stale(_client(served)), "c", "m1", DIM, "model")
    late.ensure()
    assert [a.alias_name for a in served.inner.get_aliases().aliases] == ["c"]

    # and several starting at the same moment, through the server
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def start(alias: str) -> None:
        store = IndexStore(_client(served), alias, "m2", DIM, "model")
        barrier.wait()
        try:
            store.ensure()
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=start, args=("d",)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    names = {c.name for c in served.inner.get_collections().collections}
    assert {"c__m1", "d__m2"} <= names
    assert {a.alias_name: a.collection_name for a in served.inner.get_aliases().aliases} == {
        "c": "c__m1",
        "d": "d__m2",
    }

    # a real failure is still raised: not swallowed as "someone else created it"
    broken = IndexStore(_client(served), "e", "m3", 0, "model")  # no such vector size
    with pytest.raises(UnexpectedResponse):
        broken.ensure()


def test_the_index_store_works_through_it(served: Served) -> None:
    """Replace a document's chunk set with a shorter one, delete another: no stale chunk survives."""
    from streamrag.contracts import Op
    from streams.batch import ChunkVectors, PreparedDoc, Sourced
    from streams.index_store import IndexStore
    from tests.utils.builders import document_event

    store = IndexStore(QdrantClient(url=served.url), "c", "m1", DIM, "model")
    store.ensure()
    rng = np.random.default_rng(3)

    def doc(doc_id: str, version: int, n_chunks: int, op: Op = Op.UPSERT) -> PreparedDoc:
        event = document_event(doc_id, tenant="t1", version=version, op=op)
        vectors = rng.normal(size=(n_chunks, DIM))
        chunks = tuple(
            ChunkVectors(
                index=i,
                text=f"chunk {i} of {doc_id} v{version}",
                parent_index=0,
                parent_text="",
                dense=tuple(float(x) for x in vectors[i] / np.linalg.norm(vectors[i])),
                sparse_indices=(i, 100 + version),
                sparse_values=(1.0, 0.5),
            )
            for i in range(n_chunks)
        )
        return PreparedDoc(src=Sourced(event, "docs", 0, version), chunks=chunks)

    store.apply([doc("a", 1, 5), doc("b", 1, 3)])
    assert sorted(store.chunk_index().values()) == sorted(
        [(1, i) for i in range(5)] + [(1, i) for i in range(3)]
    )
    store.apply([doc("a", 2, 2), doc("b", 2, 0, Op.DELETE)])
    assert sorted(store.chunk_index().values()) == [(2, 0), (2, 1)]
    a, b = doc("a", 2, 0).src.event.key, doc("b", 2, 0).src.event.key
    latest = {key: (e.version, e.op) for key, e in store.latest([a, b]).items()}
    assert latest == {a: (2, Op.UPSERT), b: (2, Op.DELETE)}


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_errors_come_back_in_qdrants_format(served: Served, tmp_path: Path) -> None:
    remote = QdrantClient(url=served.url)
    with pytest.raises(UnexpectedResponse) as missing:
        remote.count("nope")
    assert missing.value.status_code == 404 and b"nope" in missing.value.content

    bad = httpx.put(
        f"{served.url}/collections/x/points", json={"points": [{"id": "not-a-uuid", "vector": [1]}]}
    )
    assert bad.status_code in (400, 404) and "error" in bad.json()["status"]

    remote.create_collection("c", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
    with pytest.raises(UnexpectedResponse) as twice:
        remote.create_collection("c", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
    assert twice.value.status_code == 409

    not_json = httpx.post(f"{served.url}/collections/c/points/scroll", content=b"{not json")
    assert not_json.status_code == 400 and "JSON" in not_json.json()["status"]["error"]

    unsupported = httpx.post(f"{served.url}/collections/c/facet", json={"key": "doc"})
    assert unsupported.status_code == 404 and "stand-in" in unsupported.json()["status"]["error"]

    keyed = Served(tmp_path / "keyed", api_key="s3cret")
    try:
        with pytest.raises(UnexpectedResponse) as denied:
            # no version check (a background request): this server stops before it would answer
            QdrantClient(
                url=keyed.url, api_key="wrong", https=False, check_compatibility=False
            ).collection_exists("c")
        assert denied.value.status_code == 401
        right = QdrantClient(url=keyed.url, api_key="s3cret", https=False, check_compatibility=False)
        assert right.collection_exists("c") is False
    finally:
        keyed.close()
