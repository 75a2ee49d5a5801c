"""The embedded store: Qdrant's own engine in-process through Qdrant Edge (``qdrant-edge-py``).

Layout under the store's folder::

    collections/<name>/   one Edge shard per collection (segments, HNSW, payload indexes, WAL)
    specs/<name>.json     the collection's dense vector sizes, checked when it is opened again
    aliases.json          {alias: collection}, replaced whole with rename: a reader sees the old
                          map or the new one, so a blue/green switch is atomic
    .lock                 held (flock) by the one process that has the store open

An Edge shard writes every update to its write-ahead log before the call returns, so a write
survives ``kill -9`` of the process (tested). The WAL admits one open handle, so a folder belongs
to one process; a second gets :class:`StoreError` saying so (use a Qdrant server to share an index
between processes).

Edge runs no background optimizer: segments become HNSW-indexed only when ``optimize()`` is called.
That call holds the Python interpreter for its whole duration (the bindings do not release the GIL;
measured: another thread ran 14 loop turns during a 4.6 s optimize of 20k points), so the store
optimizes from a maintenance thread when writes have paused (``index_quiet_s``) and enough points
wait (``index_min_points``), or when so many wait (``index_max_points``) that scanning them would
cost more than the pause. Until then new points are searched exactly, which is fast at that size.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from streamrag.store.records import (
    PAYLOAD_ONLY,
    CollectionMissing,
    CollectionSpec,
    Match,
    Nearest,
    Payload,
    Point,
    Scored,
    SparseVector,
    StoreError,
    Where,
    as_payload,
)

log = logging.getLogger("streamrag.store")


class EdgeStore:
    """The :class:`~streamrag.store.records.VectorStore` port on Qdrant Edge shards in one folder."""

    def __init__(
        self,
        path: Path,
        *,
        index_min_points: int = 2_000,
        index_max_points: int = 50_000,
        index_quiet_s: float = 2.0,
        search_threads: int | None = None,
        maintain: bool = True,
    ) -> None:
        self.root = Path(path).resolve()
        self.location = str(self.root)
        self._collections_dir = self.root / "collections"
        self._collections_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_folder_lock()
        self._shards: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._aliases_file = self.root / "aliases.json"
        self._aliases_seen: tuple[int, int, int] | None = None
        self._aliases: dict[str, str] = {}
        self._search_threads = search_threads
        self.index_min_points = index_min_points
        self.index_max_points = index_max_points
        self.index_quiet_s = index_quiet_s
        self._pending: dict[str, int] = {}  # points written since the shard was last optimized
        self._last_write = 0.0
        self._closed = threading.Event()
        self._maintainer: threading.Thread | None = None
        if maintain:
            self._maintainer = threading.Thread(target=self._maintain, name="edge-optimizer", daemon=True)
            self._maintainer.start()

    # --- the folder ----------------------------------------------------------------------------

    def _take_folder_lock(self) -> Any:
        handle = open(self.root / ".lock", "a+")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"the embedded Qdrant store at {self.root} is already open (by another process, or "
                "another store object in this one): one process owns an embedded store, and shares "
                "one store object inside it. Stop the other process, or run a Qdrant server "
                "(`streamrag stack up --qdrant server`) and set STREAMRAG_QDRANT_URL to share one "
                "index between processes."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise StoreError(f"invalid collection name {name!r} for the embedded store at {self.root}")
        return self._collections_dir / name

    def _shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                path = self._dir(name)
                if not path.is_dir():
                    raise CollectionMissing(
                        f"collection {name!r} does not exist in the embedded store at {self.root}: "
                        "has the pipeline indexed anything yet?"
                    )
                shard = self._shards[name] = self._open(path, None)
            return shard

    def _open(self, path: Path, config: Any) -> Any:
        try:
            return qe.EdgeShard.load(str(path), config)
        except Exception as exc:
            raise StoreError(f"cannot open collection {path.name!r} at {path}: {exc}") from exc

    def _config(self, spec: CollectionSpec) -> Any:
        sparse = list(spec.sparse) or ([] if spec.dense else [PAYLOAD_ONLY])
        return qe.EdgeConfig(
            vectors={
                name: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine)
                for name, size in spec.dense.items()
            },
            sparse_vectors={
                name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if spec.idf else None)
                for name in sparse
            },
            max_search_threads=self._search_threads,
        )

    # --- collections and aliases ---------------------------------------------------------------

    def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        with self._lock:
            path = self._dir(name)
            spec_file = self.root / "specs" / f"{name}.json"
            if path.is_dir():
                stored = json.loads(spec_file.read_text()) if spec_file.exists() else dict(spec.dense)
                if {k: stored.get(k) for k in spec.dense} != dict(spec.dense):
                    raise StoreError(
                        f"collection {name!r} at {path} has dense vectors {stored}, this model needs "
                        f"{dict(spec.dense)}: re-index into a new collection (`streamrag train reindex`) "
                        "or remove the folder to rebuild it from Kafka"
                    )
                self._shard(name)
                return
            spec_file.parent.mkdir(exist_ok=True)
            spec_file.write_text(json.dumps(dict(spec.dense)))
            # Built aside and renamed into place: a crash mid-creation leaves no half collection.
            staging = self._collections_dir / f".{name}.creating"
            shutil.rmtree(staging, ignore_errors=True)
            shard = qe.EdgeShard.create(str(staging), self._config(spec))
            for key in spec.keyword_indexes:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            for key in spec.integer_indexes:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Integer))
            shard.close()
            os.rename(staging, path)
            _fsync_dir(self._collections_dir)
            self._shards[name] = self._open(path, None)

    def exists(self, name: str) -> bool:
        return name in self._shards or self._dir(name).is_dir()

    def collections(self) -> list[str]:
        return sorted(
            p.name for p in self._collections_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def drop(self, name: str) -> None:
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            self._pending.pop(name, None)
            shutil.rmtree(self._dir(name), ignore_errors=True)
            (self.root / "specs" / f"{name}.json").unlink(missing_ok=True)
            aliases = {a: c for a, c in self._read_aliases().items() if c != name}
            self._write_aliases(aliases)

    def count(self, name: str, where: Where = ()) -> int:
        return int(self._shard(name).count(qe.CountRequest(exact=True, filter=_filter(where))))

    def resolve(self, alias: str) -> str | None:
        return self._read_aliases().get(alias)

    def aliases(self) -> dict[str, str]:
        return dict(self._read_aliases())

    def point_alias(self, alias: str, target: str) -> None:
        with self._lock:
            if not self.exists(target):
                raise CollectionMissing(
                    f"cannot point alias {alias!r} at {target!r}: no such collection in {self.root}"
                )
            aliases = dict(self._read_aliases())
            aliases[alias] = target
            self._write_aliases(aliases)

    def _read_aliases(self) -> dict[str, str]:
        """The alias map, re-read only when the file changed (a stat a call: the API resolves its
        alias on every request, and a re-index in this process may switch it at any time)."""
        try:
            st = os.stat(self._aliases_file)
        except FileNotFoundError:
            return {}
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._aliases_seen:
            self._aliases = json.loads(self._aliases_file.read_text() or "{}")
            self._aliases_seen = seen
        return self._aliases

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        tmp = self._aliases_file.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(aliases, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._aliases_file)  # atomic: readers see the old map or the new one
        _fsync_dir(self.root)

    # --- points --------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        shard = self._shard(name)
        shard.update(qe.UpdateOperation.upsert_points([_point(p) for p in points]))
        self._pending[name] = self._pending.get(name, 0) + len(points)
        self._last_write = time.monotonic()

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._shard(name).update(qe.UpdateOperation.delete_points(list(ids)))
            self._last_write = time.monotonic()

    def retrieve(
        self, name: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Payload]:
        if not ids:
            return {}
        records = self._shard(name).retrieve(list(ids), _with_payload(fields), False)
        return {str(r.id): as_payload(r.payload) for r in records}

    def scroll(
        self, name: str, where: Where = (), fields: Sequence[str] | None = None, page: int = 1024
    ) -> Iterator[tuple[str, Payload]]:
        shard = self._shard(name)
        flt = _filter(where)
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=page, filter=flt, with_payload=_with_payload(fields), with_vector=False
            )
            records, offset = shard.scroll(request)
            for r in records:
                yield str(r.id), as_payload(r.payload)
            if offset is None:
                return

    def search(self, name: str, requests: Sequence[Nearest]) -> list[list[Scored]]:
        if not requests:
            return []
        shard = self._shard(name)
        batch = qe.QueryBatchRequest(
            [
                qe.QueryRequest(
                    limit=r.limit,
                    query=qe.Query.Nearest(_vector(r.vector), using=r.using),
                    filter=_filter(r.where),
                    with_payload=_with_payload(r.fields),
                    with_vector=False,
                    params=_params(r),
                )
                for r in requests
            ]
        )
        return [
            [Scored(str(p.id), float(p.score), as_payload(p.payload)) for p in found]
            for found in shard.query_batch(batch)
        ]

    # --- upkeep --------------------------------------------------------------------------------

    def optimize(self, name: str) -> bool:
        """Build the HNSW and payload indexes of ``name``'s new segments now (blocks the process)."""
        shard = self._shard(name)
        started = time.monotonic()
        with self._lock:
            self._pending[name] = 0
            changed = bool(shard.optimize())
        if changed:
            log.info("embedded Qdrant: indexed %s in %.1f s", name, time.monotonic() - started)
        return changed

    def due(self) -> list[str]:
        """Collections whose waiting points call for an optimize now (see the module doc)."""
        quiet = time.monotonic() - self._last_write >= self.index_quiet_s
        return [
            name
            for name, waiting in self._pending.items()
            if waiting >= self.index_max_points or (quiet and waiting >= self.index_min_points)
        ]

    def _maintain(self) -> None:
        while not self._closed.wait(0.5):
            for name in self.due():
                try:
                    self.optimize(name)
                except Exception as exc:  # a dropped collection, a closing store: try again later
                    log.warning("embedded Qdrant: optimizing %s failed: %s", name, exc)

    def close(self) -> None:
        self._closed.set()
        if self._maintainer is not None and self._maintainer is not threading.current_thread():
            self._maintainer.join(timeout=60)
        with self._lock:
            for shard in self._shards.values():
                with contextlib.suppress(Exception):
                    shard.close()
            self._shards.clear()
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- translation to Edge's requests ---------------------------------------------------------------


def _vector(v: Sequence[float] | SparseVector) -> Any:
    if isinstance(v, SparseVector):
        return qe.SparseVector(list(v.indices), list(v.values))
    return list(v)


def _point(p: Point) -> Any:
    return qe.Point(p.id, {name: _vector(v) for name, v in p.vectors.items()}, p.payload)


def _params(r: Nearest) -> Any:
    if not (r.ef or r.exact or r.acorn):
        return None
    acorn = qe.AcornSearchParams(enable=True) if r.acorn else None
    return qe.SearchParams(hnsw_ef=r.ef, exact=r.exact, acorn=acorn)


def _with_payload(fields: Sequence[str] | None) -> Any:
    if fields is None:
        return True
    if not fields:
        return False
    return qe.PayloadSelector.Include(list(fields))


def _condition(m: Match) -> Any:
    if len(m.values) == 1:
        return qe.FieldCondition(m.key, match=qe.MatchValue(m.values[0]))
    kinds = {type(v) for v in m.values}
    if kinds <= {str} or kinds <= {int}:
        return qe.FieldCondition(m.key, match=qe.MatchAny(list(m.values)))
    return qe.Filter(should=[qe.FieldCondition(m.key, match=qe.MatchValue(v)) for v in m.values])


def _filter(where: Where) -> Any:
    if not where:
        return None
    return qe.Filter(must=[_condition(m) for m in where])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
