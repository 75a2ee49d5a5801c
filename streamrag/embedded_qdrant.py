"""Embedded Qdrant (qdrant-client local mode), made safe to share and fast enough to serve from.

Local mode keeps each collection in memory (numpy arrays and Python lists) and persists every
point to sqlite. It is the embedded default; a Qdrant server is the production store. Three of
its limits are handled here, behind the client's own interface:

* **Threads**: it is not thread-safe and allows one process per folder, so a process shares one
  :class:`EmbeddedClient` per folder. Every call of the wrapped client runs alone; the fast
  paths below only read, so they run side by side (a readers-writer lock).
* **Commits**: it commits (and fsyncs) each point on its own. Here the points of one client call
  are committed in one transaction when the call returns: the same guarantee once
  ``upsert(..., wait=True)`` has returned, one fsync a call instead of one a point, and a call
  that dies midway leaves none of its points on disk rather than some.
* **Scans**: payload filters and sparse dot products are evaluated point by point in Python
  (microseconds a point, every query). :meth:`EmbeddedClient.keyword_scan` and
  :meth:`EmbeddedClient.fast_query` read the same in-memory arrays with numpy, so a query costs
  milliseconds, not a Python loop over the collection.

The fast paths read local mode's internals (qdrant-client 1.20, pinned in the constraints);
``tests/test_embedded_qdrant.py`` checks each against the public API on the same data, and when
an internal is missing the client falls back to the public API with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger("streamrag.qdrant")


class Scored(NamedTuple):
    """A nearest-search result for ranking: the point's id, its score and some payload fields."""

    id: str
    score: float
    payload: dict[str, Any]


#: Client methods that write points: their sqlite writes are committed once, when the call returns.
_WRITES = frozenset(
    {
        "upsert",
        "delete",
        "set_payload",
        "overwrite_payload",
        "delete_payload",
        "clear_payload",
        "update_vectors",
        "delete_vectors",
        "batch_update_points",
        "upload_points",
        "upload_collection",
    }
)


#: Client methods that only read dictionaries of the local client (no point data): they take the
#: read side, so the API's per-request alias lookup does not wait for, or hold up, searches.
_READS = frozenset({"get_aliases", "get_collection_aliases", "collection_exists", "get_collections"})


class _ReadWriteLock:
    """Many readers at once, or one writer.

    A waiting writer goes first (readers arriving after it wait), so a steady stream of searches
    cannot starve the pipeline's writes. Both sides are re-entrant in their own thread, and a thread
    holding the write side may also read; a reader may not start writing (that would deadlock with
    a second reader doing the same), and nothing here does.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0
        self._mine = threading.local()  # this thread's read depth

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._writer_depth += 1
            else:
                if getattr(self._mine, "depth", 0):
                    raise RuntimeError("a reader of the embedded store cannot start writing")
                self._writers_waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._writers_waiting -= 1
                self._writer, self._writer_depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._writer_depth -= 1
                if not self._writer_depth:
                    self._writer = None
                    self._cond.notify_all()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        depth = getattr(self._mine, "depth", 0)
        if depth or self._writer == me:  # nested in this thread's own read or write
            self._mine.depth = depth + 1
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()


class EmbeddedClient:
    """A ``QdrantClient(path=...)`` that is safe to share between threads.

    Local mode is not thread-safe: every call of the wrapped client runs alone (the write side of
    a readers-writer lock). The numpy searches and scans of this class only read, so they run
    side by side (the read side): two API requests no longer queue behind each other's search.
    Attribute access is forwarded, so it is used exactly like the client it wraps.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = _ReadWriteLock()
        # the lazily built search caches (float32 vectors, sparse postings), filled under the read side
        self._cache_lock = threading.Lock()
        # per collection object (gone with it when a collection is deleted), per sparse vector name
        self._sparse: weakref.WeakKeyDictionary[Any, dict[str, _SparsePostings]] = weakref.WeakKeyDictionary()
        self._fast = _supported(inner)
        if not self._fast:
            log.warning("qdrant-client internals changed: embedded fast paths are off (public API used)")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        batched = name in _WRITES
        if name in _READS:

            def reading(*args: Any, **kwargs: Any) -> Any:
                with self._lock.read():
                    return attr(*args, **kwargs)

            return reading

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock.write():
                if batched and self._fast:
                    with self._one_transaction(kwargs.get("collection_name", args[0] if args else None)):
                        return attr(*args, **kwargs)
                return attr(*args, **kwargs)

        return locked

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        """The wrapped ``QdrantLocal`` with the lock held (nothing else reads or writes meanwhile)."""
        with self._lock.write():
            yield self._inner._client

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        """The wrapped ``QdrantLocal`` for reading only: other readers may run meanwhile, writers not."""
        with self._lock.read():
            yield self._inner._client

    # --- commits ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _one_transaction(self, collection: Any) -> Iterator[None]:
        storage = None
        if isinstance(collection, str):
            with contextlib.suppress(Exception):
                storage = self._inner._client._get_collection(collection).storage
        if storage is None:
            yield
            return
        conn = storage.storage
        storage.storage = _DeferredCommit(conn)
        try:
            yield
        finally:
            storage.storage = conn
            # Commit even when the call failed midway: local mode applies each point in memory
            # right after persisting it, so what was persisted is what memory holds.
            conn.commit()

    # --- fast paths -------------------------------------------------------------------------------

    def keyword_scan(
        self, collection: str, key: str, values: Sequence[str], fields: Sequence[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(id, {field: value})`` of every live point whose top-level ``key`` is in ``values``.

        Equals ``scroll(scroll_filter=key MatchAny values, with_payload=fields)`` in some order.
        """
        if not self._fast:
            return _public_scan(self._inner, collection, key, values, fields)
        wanted = _member(set(values))
        with self._reading() as local:
            coll = local._get_collection(collection)
            deleted = coll.deleted.tolist()
            ids = coll.ids_inv
            return [
                (str(ids[i]), {f: pl.get(f) for f in fields})
                for i, pl in enumerate(coll.payload)
                if not deleted[i] and _matches(pl.get(key), wanted)
            ]

    def fast_query(
        self,
        collection: str,
        query: Any,
        using: str,
        query_filter: Any,
        limit: int,
        with_payload: bool | Sequence[str] = True,
    ) -> list[Any]:
        """``query_points(..., with_payload=with_payload).points`` for a dense or a sparse nearest
        search; ``with_payload`` is all of it, none, or a list of top-level keys.

        Same scores and order as local mode's own search (cosine for dense, IDF-weighted dot
        product over the overlapping terms for sparse), computed with numpy.
        """
        from qdrant_client import models as qm

        if not self._fast:
            return _public_nearest(self._inner, collection, query, using, query_filter, limit, with_payload)
        with self._reading() as local:
            coll = local._get_collection(collection)
            rows, scores = self._nearest_rows(coll, query, using, query_filter, limit)
            if with_payload is True:
                payloads = [_json_copy(coll.payload[i]) for i in rows]
            elif with_payload is False:
                payloads = [None] * len(rows)
            else:
                keys = list(with_payload)
                payloads = [
                    _json_copy({f: coll.payload[i][f] for f in keys if f in coll.payload[i]}) for i in rows
                ]
            # model_construct: the values are the store's own, already valid (validation was a
            # sixth of a search)
            return [
                qm.ScoredPoint.model_construct(id=coll.ids_inv[i], version=0, score=score, payload=pl)
                for i, score, pl in zip(rows, scores, payloads, strict=True)
            ]

    def fast_scored(
        self, collection: str, query: Any, using: str, query_filter: Any, limit: int, fields: Sequence[str]
    ) -> list[Scored]:
        """:meth:`fast_query`'s points as :class:`Scored` with only the payload ``fields`` (top-level
        scalars): what ranking needs, without copying every candidate's text."""
        if not self._fast:
            return _public_scored(self._inner, collection, query, using, query_filter, limit, fields)
        with self._reading() as local:
            coll = local._get_collection(collection)
            rows, scores = self._nearest_rows(coll, query, using, query_filter, limit)
            payloads, ids = coll.payload, coll.ids_inv
            return [
                Scored(str(ids[i]), score, {f: payloads[i][f] for f in fields if f in payloads[i]})
                for i, score in zip(rows, scores, strict=True)
            ]

    def fast_payloads(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{id: payload}`` (copies) of the live points among ``ids``, as ``retrieve`` gives them."""
        if not self._fast:
            return _public_payloads(self._inner, collection, ids)
        with self._reading() as local:
            coll = local._get_collection(collection)
            out: dict[str, dict[str, Any]] = {}
            for pid in ids:
                i = coll.ids.get(pid)
                if i is not None and not coll.deleted[i]:
                    out[str(pid)] = _json_copy(coll.payload[i])
            return out

    def _nearest_rows(
        self, coll: Any, query: Any, using: str, query_filter: Any, limit: int
    ) -> tuple[list[int], list[float]]:
        """The rows of the ``limit`` nearest live points that pass the filter, best first, and
        their scores (the read side must be held)."""
        from qdrant_client import models as qm

        if limit <= 0:
            return [], []
        n = len(coll.payload)
        # local mode grows these flags with np.append(.., 0): int arrays, so cast before negating
        mask = ~coll.deleted[:n].astype(bool) & ~coll.deleted_per_vector[using][:n].astype(bool)
        if isinstance(query, qm.SparseVector):
            scores, overlap = self._sparse_scores(coll, using, query, mask)
            mask = mask & overlap
        else:
            vectors = coll.vectors[using]
            if vectors.dtype != np.float32:
                # Local mode reloads stored vectors as float64 (np.array of lists); points
                # added in-session are float32. One cast halves the memory and the matmul.
                with self._cache_lock:
                    if coll.vectors[using].dtype != np.float32:
                        coll.vectors[using] = coll.vectors[using].astype(np.float32)
                    vectors = coll.vectors[using]
            vectors = vectors[:n]
            q = np.asarray(query, dtype=np.float32)
            norm = float(np.linalg.norm(q))
            scores = vectors @ (q / norm if norm > 1e-8 else q)
        live = np.flatnonzero(mask)
        if query_filter is None:
            if len(live) > limit:
                live = live[np.argpartition(-scores[live], limit - 1)[:limit]]
            order = live[np.argsort(-scores[live], kind="stable")]
        else:
            order = self._best_passing(
                coll, query_filter, live[np.argsort(-scores[live], kind="stable")], limit
            )
        return order.tolist(), scores[order].astype(np.float64).tolist()

    @staticmethod
    def _best_passing(coll: Any, flt: Any, ranked: np.ndarray, limit: int) -> np.ndarray:
        """The first ``limit`` of ``ranked`` rows that pass ``flt``, checked in growing blocks from
        the best down: a filter most points pass is evaluated on about ``limit`` points, not all."""
        test = _row_filter(coll, flt)
        chosen: list[int] = []
        start, step = 0, max(2 * limit, 32)
        while start < len(ranked) and len(chosen) < limit:
            block = ranked[start : start + step].tolist()
            chosen.extend(i for i in block if test(i))
            start, step = start + step, step * 2
        return np.asarray(chosen[:limit], dtype=np.int64)

    def _sparse_scores(
        self, coll: Any, name: str, query: Any, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(mask)
        with self._cache_lock:  # readers run side by side; the postings are brought up to date once
            per_name = self._sparse.setdefault(coll, {})
            postings = per_name.get(name)
            if postings is None:
                postings = per_name[name] = _SparsePostings()
            postings.sync(coll.sparse_vectors[name][:n])
            terms, vals, rows = postings.by_term()
        q_idx = np.asarray(query.indices, dtype=np.int64)
        if len(np.unique(q_idx)) != len(q_idx) or len(query.values) != len(q_idx):
            raise ValueError("sparse query: indices must be unique and as many as values")
        q_val = np.asarray(query.values, dtype=np.float64)
        if _uses_idf(coll, name):
            df_store = coll.sparse_vectors_idf.get(name) or {}
            docs = int(np.count_nonzero(mask))
            df = np.asarray([df_store.get(int(i), 0) for i in q_idx], dtype=np.float64)
            q_val = q_val * np.log((docs - df + 0.5) / (df + 0.5) + 1.0)
        order = np.argsort(q_idx)
        q_idx, q_val = q_idx[order], q_val[order]
        # the postings of each query term: one contiguous run of the term-sorted arrays
        lo, hi = np.searchsorted(terms, q_idx, "left"), np.searchsorted(terms, q_idx, "right")
        runs = [np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
        hit = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
        rows_hit = rows[hit]
        weights = vals[hit] * np.repeat(q_val, hi - lo)
        scores = np.bincount(rows_hit, weights=weights, minlength=n)[:n].astype(np.float32)
        overlap = np.bincount(rows_hit, minlength=n)[:n] > 0
        return scores, overlap


class _DeferredCommit:
    """Stands in for local mode's sqlite connection: ``with conn:`` no longer commits."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __enter__(self) -> Any:
        return self._conn

    def __exit__(self, *exc: object) -> None:
        return None  # neither commit nor roll back here: see EmbeddedClient._one_transaction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _SparsePostings:
    """Flat ``(term, value, row)`` arrays of a collection's sparse vectors, kept in step with it.

    Points are appended to local mode's lists and changed in place; a change in place (an upsert of
    an existing id) rebuilds the arrays, appended rows are added incrementally. Deleted rows stay
    and are masked at query time, like local mode does.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.seen: list[Any] = []
        self.terms = np.zeros(0, dtype=np.int64)
        self.values = np.zeros(0, dtype=np.float64)
        self.rows = np.zeros(0, dtype=np.int64)
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def by_term(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(terms, values, rows)`` sorted by term, so a query term's postings are one run found by
        binary search (scanning every posting of the collection per query was most of a sparse
        search). Sorted again only after a change."""
        if self._sorted is None:
            order = np.argsort(self.terms, kind="stable")
            self._sorted = (self.terms[order], self.values[order], self.rows[order])
        return self._sorted

    def sync(self, vectors: list[Any]) -> None:
        known = len(self.seen)
        if known > len(vectors) or not all(map(operator.is_, self.seen, vectors[:known])):
            self._reset()
            known = 0
        if known == len(vectors):
            return
        new = vectors[known:]
        lengths = [len(v.indices) for v in new]
        terms = np.fromiter((i for v in new for i in v.indices), dtype=np.int64, count=sum(lengths))
        values = np.fromiter((x for v in new for x in v.values), dtype=np.float64, count=sum(lengths))
        rows = np.repeat(np.arange(known, len(vectors), dtype=np.int64), lengths)
        self.terms = np.concatenate([self.terms, terms])
        self.values = np.concatenate([self.values, values])
        self.rows = np.concatenate([self.rows, rows])
        self.seen.extend(new)
        self._sorted = None


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON-like payload (dicts, lists, scalars): the caller may change what it
    gets without changing the stored point, as with local mode's own deepcopy, which took 60% of a
    search's time."""
    if isinstance(value, dict):
        return {k: _json_copy(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) if isinstance(v, dict | list) else v for v in value]
    return value


def _uses_idf(coll: Any, name: str) -> bool:
    from qdrant_client import models as qm

    params = (coll.config.sparse_vectors or {}).get(name)
    return params is not None and params.modifier == qm.Modifier.IDF


def _row_filter(coll: Any, flt: Any) -> Callable[[int], bool]:
    """Whether a row passes ``flt``: dictionary lookups for plain ``must`` match conditions, local
    mode's own evaluator for everything else (and for any point whose value is an array or object)."""
    from qdrant_client import models as qm
    from qdrant_client.local.payload_filters import check_filter

    payloads, ids = coll.payload, coll.ids_inv

    def exact(i: int) -> bool:
        return bool(check_filter(flt, payloads[i], ids[i], coll._calculate_has_vector(i)))

    simple = (
        not flt.should
        and not flt.must_not
        and flt.min_should is None
        and isinstance(flt.must, list)
        and all(
            isinstance(c, qm.FieldCondition)
            and isinstance(c.match, qm.MatchValue | qm.MatchAny)
            and all(part.isidentifier() for part in c.key.split("."))
            for c in flt.must
        )
    )
    if not simple:
        return exact
    conds: list[tuple[Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = [
        (
            _getter(c.key.split(".")),
            _eq(c.match.value) if isinstance(c.match, qm.MatchValue) else _member(set(c.match.any)),
        )
        for c in flt.must
    ]

    def fast(i: int) -> bool:
        pl = payloads[i]
        for get, test in conds:
            value = get(pl)
            if not test(value):  # the tests pass scalars of the expected JSON type only
                # arrays and objects: local mode's own rules decide
                return isinstance(value, list | dict) and exact(i)
        return True

    return fast


def _getter(path: list[str]) -> Callable[[dict[str, Any]], Any]:
    """The value at a dotted key's ``path`` in a payload, or None."""
    if len(path) == 1:  # the usual case (the tenant filter, on every query): one dict lookup
        key = path[0]
        return lambda pl: pl.get(key)

    def nested(pl: dict[str, Any]) -> Any:
        value: Any = pl
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return nested


def _eq(expected: Any) -> Callable[[Any], bool]:
    # Qdrant keeps JSON types apart where Python does not (True == 1 == 1.0): match the type too
    return lambda v: type(v) is type(expected) and v == expected


def _member(allowed: set[Any]) -> Callable[[Any], bool]:
    # the type first: arrays and objects (unhashable) are simply not members
    kinds = {type(x) for x in allowed}
    typed = {(type(x), x) for x in allowed}
    return lambda v: type(v) in kinds and (type(v), v) in typed


def _matches(value: Any, test: Callable[[Any], bool]) -> bool:
    """A payload value matches when it, or for an array any of its scalar elements, passes."""
    if isinstance(value, list):
        return any(_matches(x, test) for x in value if not isinstance(x, list))
    return value is not None and not isinstance(value, dict) and test(value)


def _supported(inner: Any) -> bool:
    """Whether the local-mode internals the fast paths read are where they are expected."""
    try:
        from qdrant_client.local.local_collection import LocalCollection
        from qdrant_client.local.persistence import CollectionPersistence
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:
        return False
    local = getattr(inner, "_client", None)
    return (
        isinstance(local, QdrantLocal)
        and hasattr(local, "_get_collection")
        and all(hasattr(CollectionPersistence, m) for m in ("persist", "delete"))
        and all(
            name in LocalCollection.__init__.__code__.co_names
            for name in ("payload", "deleted", "deleted_per_vector", "ids_inv", "vectors", "sparse_vectors")
        )
    )


def scan_by_key(
    client: Any, collection: str, key: str, values: Sequence[str], fields: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    """``(id, {field: value})`` of every point whose ``key`` is one of ``values``, with any client:
    embedded Qdrant's in-memory scan, else a filtered scroll (a server answers it from the payload
    index)."""
    if isinstance(client, EmbeddedClient):
        return client.keyword_scan(collection, key, values, fields)
    return _public_scan(client, collection, key, values, fields)


def nearest_scored(
    client: Any,
    collection: str,
    queries: Sequence[tuple[Any, str]],
    query_filter: Any,
    limit: int,
    fields: Sequence[str],
) -> list[list[Scored]]:
    """The ``limit`` nearest points to each ``(query, vector name)``, as :class:`Scored` with only
    the payload ``fields``, with any client: a server answers them all in one request (one round
    trip) and sends only those fields; embedded Qdrant copies only them."""
    if isinstance(client, EmbeddedClient):
        return [client.fast_scored(collection, q, using, query_filter, limit, fields) for q, using in queries]
    if limit <= 0 or not queries:
        return [[] for _ in queries]
    from qdrant_client import models as qm

    responses = client.query_batch_points(
        collection,
        requests=[
            qm.QueryRequest(query=q, using=using, filter=query_filter, limit=limit, with_payload=list(fields))
            for q, using in queries
        ],
    )
    return [_scored(r.points) for r in responses]


def payloads_of(client: Any, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{id: payload}`` of the points among ``ids`` that exist now (one ``retrieve``)."""
    if not ids:
        return {}
    if isinstance(client, EmbeddedClient):
        return client.fast_payloads(collection, ids)
    return _public_payloads(client, collection, ids)


def _public_scored(
    client: Any, collection: str, query: Any, using: str, query_filter: Any, limit: int, fields: Sequence[str]
) -> list[Scored]:
    return _scored(_public_nearest(client, collection, query, using, query_filter, limit, fields))


def _scored(points: Sequence[Any]) -> list[Scored]:
    """Qdrant's scored points as :class:`Scored`."""
    return [Scored(str(p.id), float(p.score), dict(p.payload or {})) for p in points]


def _public_payloads(client: Any, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    points = client.retrieve(collection, list(ids), with_payload=True, with_vectors=False)
    return {str(p.id): dict(p.payload or {}) for p in points}


def _public_scan(
    client: Any, collection: str, key: str, values: Sequence[str], fields: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    from qdrant_client import models as qm

    flt = qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchAny(any=list(values)))])
    out: list[tuple[str, dict[str, Any]]] = []
    offset = None
    while True:
        points, offset = client.scroll(
            collection,
            scroll_filter=flt,
            limit=4096,
            offset=offset,
            with_payload=list(fields),
            with_vectors=False,
        )
        out.extend((str(p.id), {f: (p.payload or {}).get(f) for f in fields}) for p in points)
        if offset is None:
            return out


def _public_nearest(
    client: Any,
    collection: str,
    query: Any,
    using: str,
    query_filter: Any,
    limit: int,
    with_payload: bool | Sequence[str] = True,
) -> list[Any]:
    if limit <= 0:
        return []
    response = client.query_points(
        collection,
        query=query,
        using=using,
        query_filter=query_filter,
        limit=limit,
        with_payload=with_payload if isinstance(with_payload, bool) else list(with_payload),
    )
    return list(response.points)
