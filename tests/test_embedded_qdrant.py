"""The embedded Qdrant wrapper (:mod:`streamrag.embedded_qdrant`) against qdrant-client local mode.

:class:`EmbeddedClient` reads local mode's internals for two fast paths and defers its sqlite
commits to the end of each write call. These tests run real local mode (``QdrantClient(path=...)``)
on seeded random data and check that

* ``fast_query`` and ``keyword_scan`` give what the public API gives on the same client, after
  appends, in-place updates, deletes, revivals and vector/payload edits (so the incremental
  sparse-postings cache is exercised along every path that changes it);
* the points of a write call are on disk once it returns (a process killed right after still has
  them), none of them are committed while it runs, and a process killed midway leaves none;
* the fast paths are really on for the installed qdrant-client, and they hold up under threads.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from streamrag.embedded_qdrant import EmbeddedClient, _ReadWriteLock, _supported

ROOT = Path(__file__).resolve().parents[1]
COLL = "chunks"
DIM = 16
VOCAB = 50
TENANTS = ("t0", "t1", "t2")
TAGS = ("red", "green", "blue", "amber")
KS = (1, 5, 40, 10_000)  # the last one is larger than any number of matches
EVERYTHING = 100_000  # a limit that returns every match
# the filter routes the sparse queries go through (all of them are shared with the dense queries)
SPARSE_FILTERS = ("none", "tenant", "tenant-any", "nested-lang", "tags-any", "must-not", "no-match")

# --- builders ---------------------------------------------------------------------------------------


def open_client(path: Path) -> EmbeddedClient:
    return EmbeddedClient(QdrantClient(path=str(path), force_disable_check_same_thread=True))


def create_collection(client: Any, name: str = COLL, modifier: qm.Modifier | None = qm.Modifier.IDF) -> None:
    """A collection shaped like the project's: named dense ``dense`` plus sparse ``sparse``."""
    client.create_collection(
        name,
        vectors_config={"dense": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"sparse": qm.SparseVectorParams(modifier=modifier)},
    )


def new_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def dense_vector(rng: np.random.Generator) -> list[float]:
    return rng.normal(size=DIM).tolist()


def sparse_vector(rng: np.random.Generator, max_terms: int = 8) -> qm.SparseVector:
    """Unique indices from a small vocabulary (so points overlap), unsorted, positive values."""
    nnz = int(rng.integers(0, max_terms + 1))
    indices = rng.choice(VOCAB, size=nnz, replace=False)
    return qm.SparseVector(indices=indices.tolist(), values=rng.uniform(0.05, 2.0, size=nnz).tolist())


def payload(rng: np.random.Generator) -> dict[str, Any]:
    metadata: dict[str, Any] = {"lang": str(rng.choice(["en", "de"]))}
    if rng.random() < 0.4:
        size = int(rng.integers(1, 3))
        metadata["tags"] = [str(t) for t in rng.choice(TAGS, size=size, replace=False)]
    return {
        "tenant": str(rng.choice(TENANTS)),
        "doc_key": f"doc-{int(rng.integers(0, 40)):02d}",
        "version": int(rng.integers(1, 5)),
        "metadata": metadata,
    }


def point(
    rng: np.random.Generator,
    pid: str,
    *,
    dense: bool = True,
    sparse: bool | qm.SparseVector = True,
) -> qm.PointStruct:
    """A point with random vectors and payload; ``sparse`` may also be a vector to reuse (ties)."""
    vector: dict[str, Any] = {}
    if dense:
        vector["dense"] = dense_vector(rng)
    if isinstance(sparse, qm.SparseVector):
        vector["sparse"] = sparse
    elif sparse:
        vector["sparse"] = sparse_vector(rng)
    return qm.PointStruct(id=pid, vector=vector, payload=payload(rng))


def random_points(rng: np.random.Generator, n: int) -> list[qm.PointStruct]:
    """``n`` new points; a few lack a dense or a sparse vector, a few share a sparse vector."""
    points = []
    for i in range(n):
        pid = new_id(rng)
        if i % 23 == 5:
            points.append(point(rng, pid, sparse=False))
        elif i % 29 == 7:
            points.append(point(rng, pid, dense=False))
        elif i % 17 == 3 and points and points[-1].vector.get("sparse") is not None:
            points.append(point(rng, pid, sparse=points[-1].vector["sparse"]))  # equal sparse scores
        else:
            points.append(point(rng, pid))
    return points


def filters() -> dict[str, qm.Filter | None]:
    """Filters taking each of ``_filter_mask``'s routes: plain match, nested key, list values, other."""
    fc = qm.FieldCondition
    return {
        "none": None,
        "tenant": qm.Filter(must=[fc(key="tenant", match=qm.MatchValue(value="t1"))]),
        "tenant-any": qm.Filter(must=[fc(key="tenant", match=qm.MatchAny(any=["t0", "t2"]))]),
        "nested-lang": qm.Filter(must=[fc(key="metadata.lang", match=qm.MatchValue(value="de"))]),
        "tenant-and-lang": qm.Filter(
            must=[
                fc(key="tenant", match=qm.MatchValue(value="t2")),
                fc(key="metadata.lang", match=qm.MatchValue(value="en")),
            ]
        ),
        "few-docs": qm.Filter(must=[fc(key="doc_key", match=qm.MatchAny(any=["doc-03", "doc-17"]))]),
        "version-int": qm.Filter(must=[fc(key="version", match=qm.MatchValue(value=3))]),
        "tags-list": qm.Filter(must=[fc(key="metadata.tags", match=qm.MatchValue(value="red"))]),
        "tags-any": qm.Filter(must=[fc(key="metadata.tags", match=qm.MatchAny(any=["green", "amber"]))]),
        "must-not": qm.Filter(must_not=[fc(key="tenant", match=qm.MatchValue(value="t0"))]),
        "should": qm.Filter(
            should=[
                fc(key="tenant", match=qm.MatchValue(value="t0")),
                fc(key="metadata.lang", match=qm.MatchValue(value="de")),
            ]
        ),
        "range": qm.Filter(must=[fc(key="version", range=qm.Range(gte=3))]),
        "no-match": qm.Filter(must=[fc(key="tenant", match=qm.MatchValue(value="nobody"))]),
    }


# --- comparisons ------------------------------------------------------------------------------------


def public_query(client: Any, query: Any, using: str, flt: qm.Filter | None, limit: int) -> list[Any]:
    return list(
        client.query_points(
            COLL, query=query, using=using, query_filter=flt, limit=limit, with_payload=True
        ).points
    )


def assert_dense_same(
    client: EmbeddedClient, query: list[float], flt: qm.Filter | None, ks: tuple[int, ...], ctx: str
) -> None:
    """Dense: for each k, the same ids in the same order, the same scores and the same payloads.

    Local mode ranks every match and returns the first ``limit``, so the public answer for k is the
    first k of the full answer (checked with a real limited call for the first k).
    """
    full = public_query(client, query, "dense", flt, EVERYTHING)
    limited = public_query(client, query, "dense", flt, ks[0])
    assert [p.id for p in limited] == [p.id for p in full[: ks[0]]], ctx
    for k in ks:
        fast = client.fast_query(COLL, query, "dense", flt, k)
        public = full[:k]
        assert [p.id for p in fast] == [p.id for p in public], f"{ctx} k={k}"
        assert [p.score for p in fast] == pytest.approx([p.score for p in public], abs=1e-5), f"{ctx} k={k}"
        assert [p.payload for p in fast] == [p.payload for p in public], f"{ctx} k={k}"


def assert_sparse_same(
    client: EmbeddedClient, query: qm.SparseVector, flt: qm.Filter | None, ks: tuple[int, ...], ctx: str
) -> None:
    """Sparse: for each k, the same number of points and the same scores (in order), and each
    returned point carries its own score and payload as the public API gives them.

    Points with equal scores may come in any order, and where ``k`` cuts through a run of equal
    scores either may be returned: each point's score is checked against the full public answer.
    """
    full = public_query(client, query, "sparse", flt, EVERYTHING)
    by_id = {p.id: p for p in full}
    for k in ks:
        fast = client.fast_query(COLL, query, "sparse", flt, k)
        public = full[:k]
        assert len(fast) == len(public), f"{ctx} k={k}"
        assert len({p.id for p in fast}) == len(fast), f"{ctx} k={k}: duplicate ids"
        fast_scores = [p.score for p in fast]
        assert fast_scores == sorted(fast_scores, reverse=True), f"{ctx} k={k}: not best first"
        assert fast_scores == pytest.approx([p.score for p in public], rel=1e-5, abs=1e-5), f"{ctx} k={k}"
        for p in fast:
            assert p.id in by_id, f"{ctx} k={k}: {p.id} is not a public match"
            assert p.score == pytest.approx(by_id[p.id].score, rel=1e-5, abs=1e-5), f"{ctx} k={k}: {p.id}"
            assert p.payload == by_id[p.id].payload, f"{ctx} k={k}: {p.id}"


def scroll_scan(
    client: Any, key: str, values: list[str], fields: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    flt = qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchAny(any=values))])
    out: list[tuple[str, dict[str, Any]]] = []
    offset = None
    while True:
        records, offset = client.scroll(COLL, scroll_filter=flt, limit=64, offset=offset, with_payload=fields)
        out.extend((str(r.id), {f: (r.payload or {}).get(f) for f in fields}) for r in records)
        if offset is None:
            return out


def assert_keyword_same(client: EmbeddedClient, values: list[str], live: set[str], ctx: str) -> None:
    """``keyword_scan`` == ``scroll`` with a MatchAny filter, as a set, and only live points."""
    fields = ["doc_key", "version"]
    fast = client.keyword_scan(COLL, "doc_key", values, fields)
    public = scroll_scan(client, "doc_key", values, fields)
    assert len({pid for pid, _ in fast}) == len(fast), f"{ctx}: duplicate ids"
    assert sorted(fast, key=lambda r: r[0]) == sorted(public, key=lambda r: r[0]), ctx
    assert {pid for pid, _ in fast} <= live, f"{ctx}: deleted points returned"
    assert all(set(fields_) == set(fields) for _, fields_ in fast), ctx


def check_everything(
    client: EmbeddedClient, rng: np.random.Generator, live: set[str], phase: str, *, dense: bool = True
) -> None:
    """Every fast path against the public API on the collection as it stands (``dense=False``
    leaves out the dense queries, which do not depend on the sparse modifier)."""
    if dense:
        q = dense_vector(rng)
        for name, flt in filters().items():
            assert_dense_same(client, q, flt, KS, f"{phase} dense filter={name}")
        assert_dense_same(client, dense_vector(rng), None, KS, f"{phase} dense#2")
        for p in client.fast_query(COLL, q, "dense", None, EVERYTHING):
            assert p.id in live, f"{phase}: deleted point {p.id} returned"
    sparse_queries = [
        sparse_vector(rng, max_terms=6),
        qm.SparseVector(indices=[3, 1, 2, 40], values=[0.5, 1.0, 2.0, 0.1]),  # unsorted
    ]
    for name in SPARSE_FILTERS:
        for qi, sq in enumerate(sparse_queries):
            assert_sparse_same(client, sq, filters()[name], KS, f"{phase} sparse#{qi} filter={name}")
    # a sparse query sharing no term with any point matches nothing, either way
    disjoint = qm.SparseVector(indices=[VOCAB + 1, VOCAB + 7], values=[1.0, 2.0])
    assert client.fast_query(COLL, disjoint, "sparse", None, 10) == []
    assert public_query(client, disjoint, "sparse", None, 10) == []
    for values in (["doc-00", "doc-01", "doc-02"], [f"doc-{i:02d}" for i in range(0, 40, 3)], ["doc-99"], []):
        assert_keyword_same(client, values, live, f"{phase} keyword {values[:3]}")


def sqlite_rows(path: Path, name: str = COLL) -> int:
    """Committed rows of a collection, read through a connection of our own."""
    conn = sqlite3.connect(str(path / "collection" / name / "storage.sqlite"), timeout=5)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM points").fetchone()[0])
    finally:
        conn.close()


def spy(obj: Any, method: str, after: Callable[[int], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap ``obj.method`` so that ``after(number of calls so far)`` runs after each call."""
    original = getattr(obj, method)
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = original(*args, **kwargs)
        calls += 1
        after(calls)
        return result

    monkeypatch.setattr(obj, method, wrapped)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[EmbeddedClient]:
    c = open_client(tmp_path / "q")
    yield c
    c.close()


# --- the fast paths equal the public API --------------------------------------------------------------


@pytest.mark.parametrize("modifier", [qm.Modifier.IDF, None], ids=["idf", "plain"])
def test_fast_paths_match_public_api_through_every_kind_of_change(tmp_path: Path, modifier: Any) -> None:
    """``fast_query`` (dense and sparse, every filter route, k below and above the number of
    matches) and ``keyword_scan`` equal ``query_points`` / ``scroll`` after each phase: initial
    load, in-place upserts, deletes (by id and by filter), appends, revivals of deleted ids, and
    payload and vector edits. The same client answers every phase, so the sparse postings are
    extended across appends and rebuilt across in-place changes, not built fresh each time."""
    dense = modifier is not None  # the dense checks once, the sparse ones with and without IDF
    client = open_client(tmp_path / "q")
    create_collection(client, modifier=modifier)
    rng = np.random.default_rng(20240611)
    qrng = np.random.default_rng(7)

    # 1. initial load, in a few calls
    points = random_points(rng, 300)
    for start in range(0, len(points), 100):
        client.upsert(COLL, points=points[start : start + 100], wait=True)
    live = {str(p.id) for p in points}
    check_everything(client, qrng, live, "load", dense=dense)

    # 2. in-place updates: existing ids, new vectors and payloads (some drop their sparse vector)
    ids = sorted(live)
    updated = [str(i) for i in rng.choice(ids, size=60, replace=False)]
    client.upsert(
        COLL, points=[point(rng, pid, sparse=n % 10 != 0) for n, pid in enumerate(updated)], wait=True
    )
    check_everything(client, qrng, live, "update", dense=dense)

    # 3. deletes, by id and by filter
    deleted = [str(i) for i in rng.choice(ids, size=40, replace=False)]
    client.delete(COLL, points_selector=qm.PointIdsList(points=deleted), wait=True)
    by_filter = qm.Filter(must=[qm.FieldCondition(key="doc_key", match=qm.MatchValue(value="doc-05"))])
    doomed, _ = client.scroll(COLL, scroll_filter=by_filter, limit=EVERYTHING)
    client.delete(COLL, points_selector=qm.FilterSelector(filter=by_filter), wait=True)
    live -= set(deleted) | {str(r.id) for r in doomed}
    check_everything(client, qrng, live, "delete", dense=dense)

    # 4. appends
    more = random_points(rng, 80)
    client.upsert(COLL, points=more, wait=True)
    live |= {str(p.id) for p in more}
    check_everything(client, qrng, live, "append", dense=dense)

    # 5. deleted ids upserted again, payload edits, vector edits and vector deletes
    revived = deleted[:10]
    client.upsert(COLL, points=[point(rng, pid) for pid in revived], wait=True)
    live |= set(revived)
    alive = sorted(live)
    client.set_payload(COLL, payload={"tenant": "t1"}, points=alive[:15], wait=True)
    client.overwrite_payload(
        COLL, payload={"tenant": "t2", "doc_key": "doc-03"}, points=alive[15:20], wait=True
    )
    client.update_vectors(
        COLL,
        points=[qm.PointVectors(id=pid, vector={"sparse": sparse_vector(rng)}) for pid in alive[20:30]],
        wait=True,
    )
    client.delete_vectors(COLL, vectors=["sparse"], points=alive[30:35], wait=True)
    client.delete_vectors(COLL, vectors=["dense"], points=alive[35:40], wait=True)
    check_everything(client, qrng, live, "edit", dense=dense)
    assert client.count(COLL).count == len(live)
    client.close()

    # 6. reopened from disk (local mode reloads vectors as float64; the dense path casts them
    # to float32 once), then appended to
    client = open_client(tmp_path / "q")
    check_everything(client, qrng, live, "reopen", dense=dense)
    client.fast_query(COLL, dense_vector(rng), "dense", None, 1)
    with client.exclusive() as local:
        assert local._get_collection(COLL).vectors["dense"].dtype == np.float32
    more = random_points(rng, 30)
    client.upsert(COLL, points=more, wait=True)
    live |= {str(p.id) for p in more}
    check_everything(client, qrng, live, "reopen+append", dense=dense)
    client.close()


def test_returned_payloads_are_copies(client: EmbeddedClient) -> None:
    """Changing a payload a search returned, nested values included, leaves the stored point alone."""
    create_collection(client)
    rng = np.random.default_rng(3)
    pid = new_id(rng)
    client.upsert(
        COLL,
        points=[
            qm.PointStruct(
                id=pid,
                vector={"dense": dense_vector(rng), "sparse": qm.SparseVector(indices=[1], values=[1.0])},
                payload={"tenant": "t0", "metadata": {"lang": "en", "tags": ["red"]}},
            )
        ],
        wait=True,
    )
    for query, using in (
        (dense_vector(rng), "dense"),
        (qm.SparseVector(indices=[1], values=[1.0]), "sparse"),
    ):
        (hit,) = client.fast_query(COLL, query, using, None, 5)
        hit.payload["tenant"] = "changed"
        hit.payload["metadata"]["lang"] = "changed"
        hit.payload["metadata"]["tags"].append("changed")
    (stored,) = client.retrieve(COLL, [pid], with_payload=True)
    assert stored.payload == {"tenant": "t0", "metadata": {"lang": "en", "tags": ["red"]}}


def test_sparse_ties_and_limits(client: EmbeddedClient) -> None:
    """Points with identical sparse vectors score the same; any of them may fill the last places,
    but the number of results and the scores must be the public ones for every limit."""
    create_collection(client)
    rng = np.random.default_rng(3)
    shared = qm.SparseVector(indices=[4, 9, 2], values=[1.0, 0.5, 0.25])
    points = [point(rng, new_id(rng), sparse=shared) for _ in range(12)]
    points += [point(rng, new_id(rng)) for _ in range(30)]
    client.upsert(COLL, points=points, wait=True)
    query = qm.SparseVector(indices=[9, 4], values=[1.0, 1.0])
    assert_sparse_same(client, query, None, tuple(range(1, 45)), "ties")


def test_filter_on_list_payload_uses_qdrant_rules(client: EmbeddedClient) -> None:
    """A filter on a list-valued field is decided by local mode's own evaluator (any element
    matches), also when other points hold a scalar under the same key."""
    create_collection(client)
    rng = np.random.default_rng(11)
    pts = []
    for i, value in enumerate(["a", ["a", "b"], ["b"], "b", [], None, {"x": "a"}, ["a", 1]]):
        p = point(rng, new_id(rng))
        p.payload["label"] = value  # type: ignore[index]
        p.payload["n"] = i  # type: ignore[index]
        pts.append(p)
    client.upsert(COLL, points=pts, wait=True)
    q = dense_vector(rng)
    fc = qm.FieldCondition
    for flt in (
        qm.Filter(must=[fc(key="label", match=qm.MatchValue(value="a"))]),
        qm.Filter(must=[fc(key="label", match=qm.MatchAny(any=["b"]))]),
        qm.Filter(must=[fc(key="label", match=qm.MatchAny(any=[1]))]),
        qm.Filter(must=[fc(key="label.x", match=qm.MatchValue(value="a"))]),
        qm.Filter(must=[fc(key="n", match=qm.MatchValue(value=True))]),
    ):
        assert_dense_same(client, q, flt, (3, 20), repr(flt))


# --- commits ----------------------------------------------------------------------------------------

_CHILD = r"""
import json, os, signal, sqlite3, sys
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from streamrag.embedded_qdrant import EmbeddedClient

path, mode, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = EmbeddedClient(QdrantClient(path=str(path), force_disable_check_same_thread=True))
client.create_collection(
    "chunks",
    vectors_config={"dense": qm.VectorParams(size=4, distance=qm.Distance.COSINE)},
    sparse_vectors_config={"sparse": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
)
db = path / "collection" / "chunks" / "storage.sqlite"


def rows():
    conn = sqlite3.connect(str(db), timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    finally:
        conn.close()


def points(start, count):
    return [
        qm.PointStruct(
            id=f"00000000-0000-4000-8000-{i:012d}",
            vector={
                "dense": [1.0, float(i), 0.5, -1.0],
                "sparse": qm.SparseVector(indices=[i % 7, 9], values=[1.0, 2.0]),
            },
            payload={"i": i, "doc_key": f"doc-{i % 5}"},
        )
        for i in range(start, start + count)
    ]


def report(**kw):
    print(json.dumps(kw), flush=True)


if mode == "kill-after-return":
    client.upsert("chunks", points=points(0, n), wait=True)
    after_upsert = rows()
    client.delete("chunks", points_selector=qm.PointIdsList(points=[points(3, 1)[0].id]), wait=True)
    report(after_upsert=after_upsert, after_delete=rows())
elif mode == "kill-mid-call":
    client.upsert("chunks", points=points(0, n), wait=True)
    storage = client._inner._client._get_collection("chunks").storage
    persist, calls = storage.persist, [0]

    def dying_persist(point):
        persist(point)
        calls[0] += 1
        if calls[0] == n // 2:
            report(committed_before=n, persisted=calls[0], rows=rows())
            os.kill(os.getpid(), signal.SIGKILL)

    storage.persist = dying_persist
    client.upsert("chunks", points=points(n, n), wait=True)
    report(error="the upsert returned")
    sys.exit(3)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_child(path: Path, mode: str, n: int) -> list[dict[str, Any]]:
    """Run ``_CHILD`` in a fresh interpreter, which ends by SIGKILL (no close, no atexit)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode, str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def child_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_points_of_a_returned_call_survive_a_kill(tmp_path: Path) -> None:
    """Once ``upsert``/``delete`` with ``wait=True`` returned, their rows are committed (another
    sqlite connection sees them), and a process killed right after, with no close, loses none."""
    path, n = tmp_path / "q", 50
    (report,) = run_child(path, "kill-after-return", n)
    assert report == {"after_upsert": n, "after_delete": n - 1}

    reopened = QdrantClient(path=str(path))
    try:
        records, _ = reopened.scroll(COLL, limit=EVERYTHING, with_vectors=True)
        assert sorted(str(r.id) for r in records) == sorted(child_id(i) for i in range(n) if i != 3)
        assert all(
            r.payload == {"i": int(str(r.id)[-12:]), "doc_key": f"doc-{int(str(r.id)[-12:]) % 5}"}
            for r in records
        )
        assert all(set(r.vector) == {"dense", "sparse"} for r in records)  # type: ignore[arg-type]
    finally:
        reopened.close()


def test_a_call_killed_midway_leaves_none_of_its_points(tmp_path: Path) -> None:
    """A process killed in the middle of an upsert (half its points persisted) leaves that call's
    points uncommitted: on reopening, exactly the earlier call's points are there."""
    path, n = tmp_path / "q", 40
    (report,) = run_child(path, "kill-mid-call", n)
    assert report == {"committed_before": n, "persisted": n // 2, "rows": n}

    reopened = QdrantClient(path=str(path))
    try:
        records, _ = reopened.scroll(COLL, limit=EVERYTHING)
        assert sorted(str(r.id) for r in records) == [child_id(i) for i in range(n)]
    finally:
        reopened.close()


def test_nothing_is_committed_while_a_write_call_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watching the sqlite file from a second connection after each point is persisted: through
    the wrapper the count stays at its value from before the call until the call returns, then
    jumps by the whole batch. Unwrapped local mode shows each point as it goes, which proves the
    watch can see commits."""
    rng = np.random.default_rng(5)

    def watch(client: Any, path: Path, method: str) -> list[int]:
        seen: list[int] = []
        storage = client._client._get_collection(COLL).storage  # QdrantClient and EmbeddedClient alike
        spy(storage, method, lambda _calls: seen.append(sqlite_rows(path)), monkeypatch)
        return seen

    # wrapped: one commit a call
    path = tmp_path / "wrapped"
    client = open_client(path)
    create_collection(client)
    first = random_points(rng, 30)
    client.upsert(COLL, points=first, wait=True)
    assert sqlite_rows(path) == 30
    persisted = watch(client, path, "persist")
    client.upsert(COLL, points=random_points(rng, 20), wait=True)
    assert persisted == [30] * 20
    assert sqlite_rows(path) == 50
    removed = watch(client, path, "delete")
    client.delete(COLL, points_selector=qm.PointIdsList(points=[p.id for p in first[:10]]), wait=True)
    assert removed == [50] * 10
    assert sqlite_rows(path) == 40
    client.close()

    # unwrapped local mode: one commit a point
    path = tmp_path / "plain"
    plain = QdrantClient(path=str(path), force_disable_check_same_thread=True)
    create_collection(plain)
    persisted = watch(plain, path, "persist")
    plain.upsert(COLL, points=random_points(rng, 5), wait=True)
    assert persisted == [1, 2, 3, 4, 5]
    plain.close()


def test_a_failed_write_call_leaves_disk_as_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write call that raises midway still commits the points it applied, so what a reopened
    folder holds is what the client held in memory; the connection is restored afterwards."""
    rng = np.random.default_rng(9)
    path = tmp_path / "q"
    client = open_client(path)
    create_collection(client)
    client.upsert(COLL, points=random_points(rng, 10), wait=True)
    storage = client._client._get_collection(COLL).storage
    persist, calls = storage.persist, [0]

    def failing_persist(p: qm.PointStruct) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise sqlite3.OperationalError("disk I/O error")
        persist(p)

    monkeypatch.setattr(storage, "persist", failing_persist)
    with pytest.raises(sqlite3.OperationalError):
        client.upsert(COLL, points=random_points(rng, 6), wait=True)
    assert isinstance(storage.storage, sqlite3.Connection)  # the deferred-commit stand-in is gone
    in_memory = sorted(str(r.id) for r in client.scroll(COLL, limit=EVERYTHING)[0])
    assert len(in_memory) == 12  # the first two points of the failed call were applied
    assert sqlite_rows(path) == 12
    client.close()

    reopened = QdrantClient(path=str(path))
    try:
        on_disk = sorted(str(r.id) for r in reopened.scroll(COLL, limit=EVERYTHING)[0])
    finally:
        reopened.close()
    assert on_disk == in_memory


# --- the fast paths are on ------------------------------------------------------------------------


def test_fast_paths_are_on_for_the_installed_qdrant_client(client: EmbeddedClient) -> None:
    """The internals the fast paths read are where they are expected, so the tests above really
    compare the numpy paths with the public API, not the public API with itself."""
    assert _supported(client._inner)
    assert client._fast is True
    assert not _supported(object())


def test_public_fallback_gives_the_same_answers(client: EmbeddedClient) -> None:
    """With the fast paths off (internals changed), ``fast_query`` and ``keyword_scan`` answer
    through the public API: the same calls, the same results."""
    create_collection(client)
    rng = np.random.default_rng(13)
    client.upsert(COLL, points=random_points(rng, 60), wait=True)
    fallback = EmbeddedClient(client._inner)
    fallback._fast = False
    flt = filters()["tenant"]
    for using, query in (("dense", dense_vector(rng)), ("sparse", sparse_vector(rng))):
        slow = fallback.fast_query(COLL, query, using, flt, 10)
        public = public_query(client, query, using, flt, 10)
        assert [(p.id, p.score, p.payload) for p in slow] == [(p.id, p.score, p.payload) for p in public]
    keys, fields = ["doc-01", "doc-02", "doc-03"], ["doc_key", "version"]
    slow_scan = fallback.keyword_scan(COLL, "doc_key", keys, fields)
    assert slow_scan
    assert sorted(slow_scan, key=lambda r: r[0]) == sorted(
        scroll_scan(client, "doc_key", keys, fields), key=lambda r: r[0]
    )
    assert not fallback._sparse  # no postings were built: the numpy paths never ran


def test_scored_and_payloads_give_what_query_and_retrieve_give(client: EmbeddedClient) -> None:
    """``fast_scored`` is ``fast_query`` (checked against the public API above) with only the asked
    payload fields, and ``fast_payloads``
    is ``retrieve`` of the live points among the ids (deleted and unknown ids left out), on the
    fast paths and on the public fallback alike."""
    create_collection(client)
    rng = np.random.default_rng(19)
    points = random_points(rng, 80)
    client.upsert(COLL, points=points, wait=True)
    gone = [points[3].id, points[10].id]
    client.delete(COLL, points_selector=qm.PointIdsList(points=gone), wait=True)
    fallback = EmbeddedClient(client._inner)
    fallback._fast = False
    fields = ["tenant", "version", "absent"]
    for c in (client, fallback):
        for flt in (None, filters()["tenant"]):
            for using, query in (("dense", dense_vector(rng)), ("sparse", sparse_vector(rng))):
                full = c.fast_query(COLL, query, using, flt, 15)
                scored = c.fast_scored(COLL, query, using, flt, 15, fields)
                assert full
                assert [s.id for s in scored] == [str(p.id) for p in full]
                # (local mode's own scores can differ in the last float32 bit from call to call)
                assert [s.score for s in scored] == pytest.approx([p.score for p in full], abs=1e-6)
                assert [s.payload for s in scored] == [
                    {f: p.payload[f] for f in ("tenant", "version")} for p in full
                ]
        ids = [str(p.id) for p in points[:12]] + [new_id(rng)]
        got = c.fast_payloads(COLL, ids)
        expected = {str(p.id): p.payload for p in client.retrieve(COLL, ids, with_payload=True)}
        assert got == expected
        assert set(got) == {str(p.id) for p in points[:12]} - {str(g) for g in gone}
    copy = client.fast_payloads(COLL, [str(points[0].id)])[str(points[0].id)]
    copy["metadata"]["lang"] = "changed"  # a copy: the stored point is not changed
    assert client.retrieve(COLL, [points[0].id])[0].payload["metadata"]["lang"] != "changed"


# --- threads ----------------------------------------------------------------------------------------


def test_concurrent_queries_and_writes(client: EmbeddedClient) -> None:
    """Four threads query (fast paths, and fast against public under the lock) while one writes
    (appends, in-place upserts, deletes) for about a second: no errors, and the end state agrees."""
    create_collection(client)
    rng = np.random.default_rng(17)
    client.upsert(COLL, points=random_points(rng, 200), wait=True)
    errors: list[BaseException] = []
    stop = threading.Event()
    start = threading.Barrier(5)
    counts = [0] * 4

    def reader(n: int) -> None:
        r = np.random.default_rng(100 + n)
        start.wait()
        try:
            while not stop.is_set():
                flt = list(filters().values())[int(r.integers(0, 5))]
                client.fast_query(COLL, sparse_vector(r, 6), "sparse", flt, 10)
                client.keyword_scan(COLL, "doc_key", ["doc-01", "doc-02"], ["doc_key"])
                with client.exclusive():  # nothing writes between the two answers
                    assert_dense_same(client, dense_vector(r), flt, (10,), f"reader {n}")
                counts[n] += 1
        except BaseException as e:
            errors.append(e)

    def writer() -> None:
        w = np.random.default_rng(200)
        start.wait()
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                client.upsert(COLL, points=random_points(w, 5), wait=True)
                ids = [str(r.id) for r in client.scroll(COLL, limit=EVERYTHING)[0]]
                chosen = [str(i) for i in w.choice(ids, size=6, replace=False)]
                client.upsert(COLL, points=[point(w, pid) for pid in chosen[:3]], wait=True)
                client.delete(COLL, points_selector=qm.PointIdsList(points=chosen[3:]), wait=True)
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert all(counts), counts

    qrng = np.random.default_rng(18)
    live = {str(r.id) for r in client.scroll(COLL, limit=EVERYTHING)[0]}
    for name, flt in filters().items():
        assert_dense_same(client, dense_vector(qrng), flt, (1, 25), f"final dense {name}")
        assert_sparse_same(client, sparse_vector(qrng, 6), flt, (1, 25, EVERYTHING), f"final sparse {name}")
    assert_keyword_same(client, [f"doc-{i:02d}" for i in range(10)], live, "final keyword")


# --- the readers-writer lock ---------------------------------------------------------------------


def _in_thread(body: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def _reader_holding(
    lock: _ReadWriteLock, inside: threading.Event, release: threading.Event
) -> threading.Thread:
    """A thread that takes the read side, sets ``inside`` and holds it until ``release``."""

    def read() -> None:
        with lock.read():
            inside.set()
            release.wait(5)

    return _in_thread(read)


def test_readers_overlap_and_a_writer_waits_for_them() -> None:
    lock = _ReadWriteLock()
    first_in, second_in, release, writer_in = (threading.Event() for _ in range(4))

    def writer() -> None:
        with lock.write():
            writer_in.set()

    threads = [_reader_holding(lock, first_in, release)]
    assert first_in.wait(5)
    threads.append(_reader_holding(lock, second_in, release))
    assert second_in.wait(5), "a second reader waited for the first"
    threads.append(_in_thread(writer))
    assert not writer_in.wait(0.2), "a writer ran beside readers"
    release.set()
    assert writer_in.wait(5)
    for t in threads:
        t.join(5)


def test_a_waiting_writer_goes_before_new_readers() -> None:
    lock = _ReadWriteLock()
    reading, release, late_reader_in = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")
            late_reader_in.set()

    threads = [_reader_holding(lock, reading, release)]
    assert reading.wait(5)
    threads.append(_in_thread(writer))
    time.sleep(0.1)  # the writer is waiting now
    threads.append(_in_thread(late_reader))
    assert not late_reader_in.wait(0.2), "a new reader overtook a waiting writer"
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["writer", "late reader"]


def test_lock_reentrancy_rules() -> None:
    lock = _ReadWriteLock()
    with lock.write(), lock.write(), lock.read(), lock.read():
        pass  # a writer may write again and read; reads nest
    with lock.read(), lock.read(), pytest.raises(RuntimeError, match="cannot start writing"), lock.write():
        pass
    with lock.write():  # and everything was released
        pass


def test_searches_run_side_by_side(client: EmbeddedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two fast_query calls overlap in time (the read side), and give what they give alone."""
    create_collection(client)
    rng = np.random.default_rng(23)
    client.upsert(COLL, points=random_points(rng, 300), wait=True)
    queries = [dense_vector(rng) for _ in range(2)]
    alone = [[(str(p.id), p.score) for p in client.fast_query(COLL, q, "dense", None, 10)] for q in queries]

    inside = threading.Barrier(2, timeout=5)
    real = EmbeddedClient._best_passing

    def meet_inside(*args: Any, **kwargs: Any) -> Any:
        inside.wait()  # both searches are inside the lock at once, or this times out
        return real(*args, **kwargs)

    monkeypatch.setattr(EmbeddedClient, "_best_passing", staticmethod(meet_inside))
    results: dict[int, list[tuple[str, float]]] = {}
    flt = qm.Filter(must=[qm.FieldCondition(key="tenant", match=qm.MatchAny(any=list(TENANTS)))])

    def search(n: int) -> None:
        results[n] = [(str(p.id), p.score) for p in client.fast_query(COLL, queries[n], "dense", flt, 10)]

    threads = [_in_thread(lambda n=n: search(n)) for n in range(2)]
    for t in threads:
        t.join(10)
    assert not inside.broken
    assert [results[0], results[1]] == alone


def test_alias_and_collection_lookups_do_not_wait_for_a_search(client: EmbeddedClient) -> None:
    """The API looks its alias up on every request: a lookup runs while a search holds the read
    side (a write would wait for it), and sees what it saw before."""
    create_collection(client)
    client.update_collection_aliases(
        [qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=COLL, alias_name="live"))]
    )
    before = client.get_aliases().aliases
    with client._reading():  # a search in flight
        done: list[Any] = []
        t = _in_thread(
            lambda: done.extend(
                [client.get_aliases().aliases, client.collection_exists(COLL), client.get_collections()]
            )
        )
        t.join(5)
        assert done, "a lookup waited for the read side to be released"
        writer = _in_thread(lambda: client.delete_collection("nothing-here"))
        writer.join(0.3)
        assert writer.is_alive()  # a write still waits for the search
    writer.join(5)
    assert done[0] == before and done[1] is True and COLL in [c.name for c in done[2].collections]


# --- typed and array matching (divergences found while writing these tests, fixed) ----------------------------------------------------------------------------


def test_int_match_does_not_match_a_float_payload(client: EmbeddedClient) -> None:
    """``version: 2.0`` is not matched by ``MatchValue(2)`` / ``MatchAny([2])`` in Qdrant."""
    create_collection(client)
    rng = np.random.default_rng(21)
    pts = [point(rng, new_id(rng)) for _ in range(2)]
    pts[0].payload["version"] = 2.0  # type: ignore[index]
    pts[1].payload["version"] = 2  # type: ignore[index]
    client.upsert(COLL, points=pts, wait=True)
    q = dense_vector(rng)
    for match in (qm.MatchValue(value=2), qm.MatchAny(any=[2])):
        flt = qm.Filter(must=[qm.FieldCondition(key="version", match=match)])
        assert_dense_same(client, q, flt, (10,), repr(match))


def test_one_key_filter_agrees_with_local_mode_on_every_kind_of_value(client: EmbeddedClient) -> None:
    """The API's filter (one top-level key equal to one value) has its own fast path: strings,
    arrays holding the value, objects, missing keys, and the JSON types Python conflates (True and
    1) pass or fail exactly as local mode decides."""
    create_collection(client)
    rng = np.random.default_rng(29)
    values: list[Any] = ["a", "b", ["a", "c"], ["c"], {"x": "a"}, None, 1, True, 1.0, "1", [1, True]]
    points = []
    for value in values * 3:
        p = point(rng, new_id(rng))
        p.payload = {"tag": value} if value is not None else {}
        points.append(p)
    client.upsert(COLL, points=points, wait=True)
    for expected in ("a", 1, True):
        flt = qm.Filter(must=[qm.FieldCondition(key="tag", match=qm.MatchValue(value=expected))])
        assert_dense_same(client, dense_vector(rng), flt, (1, 5, 40), f"tag == {expected!r}")


def test_keyword_scan_on_a_list_valued_key(client: EmbeddedClient) -> None:
    """``scroll`` with MatchAny matches a point whose ``doc_key`` is a list holding a wanted value."""
    create_collection(client)
    rng = np.random.default_rng(23)
    pts = [point(rng, new_id(rng)) for _ in range(3)]
    pts[0].payload["doc_key"] = ["doc-a", "doc-b"]  # type: ignore[index]
    pts[1].payload["doc_key"] = "doc-a"  # type: ignore[index]
    client.upsert(COLL, points=pts, wait=True)
    assert_keyword_same(client, ["doc-a"], {str(p.id) for p in pts}, "list doc_key")


def test_sparse_query_with_repeated_indices_is_rejected(client: EmbeddedClient) -> None:
    """Like ``query_points``, the fast path refuses a sparse query whose indices repeat."""
    create_collection(client)
    rng = np.random.default_rng(29)
    client.upsert(COLL, points=[point(rng, new_id(rng)) for _ in range(3)], wait=True)
    with pytest.raises(ValueError, match="unique"):
        client.fast_query(COLL, qm.SparseVector(indices=[1, 1], values=[1.0, 1.0]), "sparse", None, 5)


def test_a_recreated_collection_does_not_see_the_old_ones_sparse_cache(client: EmbeddedClient) -> None:
    """The sparse postings are cached per collection object: deleting and re-creating a collection
    of the same name starts from its own points, not the cache of the old ones."""
    rng = np.random.default_rng(31)
    query = qm.SparseVector(indices=list(range(0, 50, 3)), values=[1.0] * 17)
    create_collection(client)
    client.upsert(COLL, points=random_points(rng, 40), wait=True)
    assert_sparse_same(client, query, None, (5, 100), "before")
    client.delete_collection(COLL)
    create_collection(client)
    client.upsert(COLL, points=random_points(rng, 25), wait=True)
    assert_sparse_same(client, query, None, (5, 100), "re-created")
