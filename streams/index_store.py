"""Writing documents to Qdrant exactly: deterministic ids, a version registry, stale-chunk cleanup.

Layout (see :class:`streamrag.contracts.IndexSchema`): a chunk collection per embedding model
version, and beside it a registry collection with one entry per accepted ``(document, version,
op)``. Every write is idempotent and the sequence below is safe under replays, crashes between any
two calls, and concurrent writers of the same document (for example the same document arriving
from the CDC topic and the documents topic on two workers):

1. upsert the new version's chunk points (ids from tenant, doc_id, version, chunk index, model);
2. upsert the registry entry for ``(doc, version, op)``;
3. read the document's largest registered ``order`` (version * 2 + 1 for a delete);
4. delete the document's chunks of every older version (and all of them if the largest is a delete);
5. prune registry entries below the largest.

A writer whose version lost a race deletes its own chunks in step 4, because step 3 happens after
its step 1 and sees the newer entry; a newer writer's step 4 removes older chunks written before
it. Every chunk of a non-latest version is therefore eventually deleted, and the latest version's
chunks are never deleted by anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streamrag.contracts import ChunkPayload, Op, utcnow
from streamrag.contracts import IndexSchema as S
from streamrag.store import CollectionSpec, Match, Point, SparseVector, VectorStore
from streams.batch import PreparedDoc

#: Namespace of every streamrag point id (uuid5).
POINT_NAMESPACE = uuid.UUID("6f1c2a3e-8b4d-5e6f-9a0b-1c2d3e4f5a6b")


def chunk_point_id(tenant: str, doc_id: str, version: int, chunk_index: int, model_version: str) -> str:
    """Deterministic: the same chunk of the same version under the same model is the same point."""
    return str(
        uuid.uuid5(
            POINT_NAMESPACE, f"chunk\x1f{tenant}\x1f{doc_id}\x1f{version}\x1f{chunk_index}\x1f{model_version}"
        )
    )


def registry_point_id(doc_key: str, order: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"doc\x1f{doc_key}\x1f{order}"))


def order_of(version: int, op: Op) -> int:
    """The registry's total order: ``(version, op_rank)`` packed in one integer."""
    return version * 2 + (1 if op is Op.DELETE else 0)


@dataclass(frozen=True, slots=True)
class Registered:
    order: int
    version: int
    op: Op
    chunk_count: int
    indexed_ts: str


class IndexStore:
    """The pipeline's view of one collection (one embedding model version) in a :class:`VectorStore`."""

    def __init__(self, store: VectorStore, alias: str, model_version: str, dim: int, model_id: str) -> None:
        self.store = store
        self.alias = alias
        self.collection = S.collection_for(alias, model_version)
        self.registry = self.collection + S.REGISTRY_SUFFIX
        self.model_version = model_version
        self.model_id = model_id
        self.dim = dim

    # --- setup -----------------------------------------------------------------------------------

    def ensure(self, point_alias: bool = True) -> None:
        """Create the collections if missing; point the alias at this one if the alias is unset.

        Safe when several processes start at once (a pipeline cluster): creating what another
        process created meanwhile is no error, and so is pointing the alias where it points.
        """
        self.store.ensure_collection(
            self.collection,
            CollectionSpec(
                dense={S.DENSE: self.dim},
                sparse=[S.SPARSE],
                keyword_indexes=[S.DOC_KEY, S.TENANT],
                integer_indexes=[S.VERSION],
            ),
        )
        self.store.ensure_collection(self.registry, CollectionSpec(keyword_indexes=[S.DOC_KEY]))
        if point_alias and self.store.resolve(self.alias) is None:
            self.store.point_alias(self.alias, self.collection)

    # --- the fence -------------------------------------------------------------------------------

    def latest(self, doc_keys: Iterable[str]) -> dict[str, Registered]:
        """The largest registered entry of each document (documents never seen are absent)."""
        return {key: max(es, key=lambda e: e.order) for key, es in self.entries(doc_keys).items()}

    def entries(self, doc_keys: Iterable[str]) -> dict[str, list[Registered]]:
        """Every registry entry of each document (one set-membership scan of the registry)."""
        keys = sorted(set(doc_keys))
        out: dict[str, list[Registered]] = {}
        if not keys:
            return out
        fields = [S.DOC_KEY, S.ORDER, S.VERSION, S.OP, S.CHUNK_COUNT, S.INDEXED_TS]
        for _, pl in self._scan(self.registry, keys, fields):
            entry = Registered(pl[S.ORDER], pl[S.VERSION], Op(pl[S.OP]), pl[S.CHUNK_COUNT], pl[S.INDEXED_TS])
            out.setdefault(pl[S.DOC_KEY], []).append(entry)
        return out

    def _scan(self, collection: str, keys: list[str], fields: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """``(id, payload fields)`` of every point of ``collection`` whose doc key is in ``keys``
        (answered from the doc key's payload index)."""
        return list(self.store.scroll(collection, [Match.any_of(S.DOC_KEY, keys)], fields))

    def _points_of(self, keys: list[str]) -> list[tuple[str, str, int]]:
        """(point id, doc key, version) of every chunk of these documents: one pass, one set lookup a point.

        Finding stale chunks by scanning (not by computing ids from registry entries) also removes
        chunks a crashed writer left without a registry entry.
        """
        return [
            (pid, pl[S.DOC_KEY], pl[S.VERSION])
            for pid, pl in self._scan(self.collection, keys, [S.DOC_KEY, S.VERSION])
        ]

    # --- writing ---------------------------------------------------------------------------------

    def apply(self, docs: list[PreparedDoc]) -> int:
        """Apply the batch's document changes (steps 1-5 above); returns chunk points written."""
        if not docs:
            return 0
        now = utcnow().isoformat()
        points: list[Point] = []
        entries: list[Point] = []
        for doc in docs:
            ev = doc.src.event
            for ch in doc.chunks:
                points.append(
                    Point(
                        id=chunk_point_id(ev.tenant, ev.doc_id, ev.version, ch.index, self.model_version),
                        vectors={
                            S.DENSE: list(ch.dense),
                            S.SPARSE: SparseVector(list(ch.sparse_indices), list(ch.sparse_values)),
                        },
                        payload=ChunkPayload(
                            tenant=ev.tenant,
                            doc_id=ev.doc_id,
                            doc_key=ev.key,
                            version=ev.version,
                            chunk_index=ch.index,
                            chunk_count=len(doc.chunks),
                            title=doc.title,
                            text=ch.text,
                            parent_index=ch.parent_index,
                            parent_text=ch.parent_text,
                            source_ts=ev.source_ts.isoformat(),
                            indexed_ts=now,
                            model_id=self.model_id,
                            metadata=ev.metadata,
                            source=ev.source,
                            source_topic=doc.src.topic,
                            source_partition=doc.src.partition,
                            source_offset=doc.src.offset,
                        ).model_dump(),
                    )
                )
        if points:
            self.store.upsert(self.collection, points)  # 1
        searchable = utcnow().isoformat()  # the chunks are visible to queries from here on
        for doc in docs:
            ev = doc.src.event
            order = order_of(ev.version, ev.op)
            entries.append(
                Point(
                    id=registry_point_id(ev.key, order),
                    vectors={},
                    payload={
                        S.DOC_KEY: ev.key,
                        S.TENANT: ev.tenant,
                        S.DOC_ID: ev.doc_id,
                        S.VERSION: ev.version,
                        S.OP: ev.op.value,
                        S.ORDER: order,
                        S.CHUNK_COUNT: len(doc.chunks),
                        S.SOURCE_TS: ev.source_ts.isoformat(),
                        S.INDEXED_TS: searchable,
                        "lsn": ev.lsn,
                        "source_topic": doc.src.topic,
                        "source_partition": doc.src.partition,
                        "source_offset": doc.src.offset,
                    },
                )
            )
        self.store.upsert(self.registry, entries)  # 2
        keys = sorted({d.src.event.key for d in docs})
        registered = self.entries(keys)  # 3
        top = {key: max(es, key=lambda e: e.order) for key, es in registered.items()}
        stale_chunks = [
            pid for pid, key, version in self._points_of(keys) if key in top and _stale(version, top[key])
        ]
        if stale_chunks:
            self.store.delete(self.collection, stale_chunks)  # 4
        old_entries = [
            registry_point_id(key, e.order)
            for key, es in registered.items()
            for e in es
            if e.order < top[key].order
        ]
        if old_entries:
            self.store.delete(self.registry, old_entries)  # 5
        return len(points)

    # --- reading (tests, status) -----------------------------------------------------------------

    def chunk_index(self) -> dict[str, tuple[int, int]]:
        """Every chunk point: id -> (version, chunk_index). For exactness checks."""
        return {
            pid: (pl[S.VERSION], pl[S.CHUNK_INDEX])
            for pid, pl in self.store.scroll(self.collection, fields=[S.VERSION, S.CHUNK_INDEX], page=2048)
        }


def _stale(version: int, top: Registered) -> bool:
    """A chunk of ``version`` is stale below the latest version, and at it when the latest is a delete."""
    return version <= top.version if top.op is Op.DELETE else version < top.version
