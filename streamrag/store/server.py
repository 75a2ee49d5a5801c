"""A Qdrant server or cluster through ``qdrant-client``: the same port as the embedded store.

Every write waits for the server (``wait=True``) so that returning means applied; on a cluster it
also waits for ``write_consistency_factor`` replicas (``ordering=medium``: through a shard leader
elected among the live replicas). Reads of points and payloads ask as many replicas as a write
waits for. With 3 replicas and a factor of 2 (``streamrag stack up --qdrant cluster``), any read
overlaps any acknowledged write, and both go on with one node lost; measured on the local cluster:
no failed write with a node killed, every acknowledged write read back after losing a second node
once the first had rejoined. ``ordering=strong`` routes through a fixed leader and failed every
write of the dead node's shards; 2 replicas with a factor of 2 failed them too; a factor of 1 lost
the overlap.

Errors become :class:`StoreUnavailable` (cannot connect, timed out, 5xx: try again later; the API
answers 503), :class:`CollectionMissing` (404) or :class:`StoreError`, each naming the URL and the
collection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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
    StoreUnavailable,
    Where,
    as_payload,
)

log = logging.getLogger("streamrag.store")
T = TypeVar("T")


class ServerStore:
    """The :class:`~streamrag.store.records.VectorStore` port on a Qdrant server (REST)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
        shard_number: int | None = None,
        write_ordering: str = "medium",  # strong stops a shard's writes while its fixed leader is down
        prefer_grpc: bool = False,
        grpc_port: int | None = None,
    ) -> None:
        self.location = url
        self.ordering = qm.WriteOrdering(write_ordering)
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        self.shard_number = shard_number
        # check_compatibility: a background version probe that warns; `check_version` asks instead.
        if grpc_port is None:  # Qdrant's own layout (6333 HTTP, 6334 gRPC), which the local stack keeps
            grpc_port = (urlsplit(url).port or 6333) + 1
        self.client = QdrantClient(
            url=url,
            api_key=api_key,
            timeout=int(timeout_s),
            check_compatibility=False,
            prefer_grpc=prefer_grpc,
            grpc_port=grpc_port,
        )
        self._read: Any = write_consistency_factor if replication_factor > 1 else None

    def _call(self, what: str, collection: str | None, fn: Callable[[], T]) -> T:
        where = f"collection {collection!r} on " if collection else ""
        try:
            return fn()
        except UnexpectedResponse as exc:
            detail = _detail(exc)
            if exc.status_code == 404:
                raise CollectionMissing(
                    f"{what}: {where}the Qdrant server at {self.location} has no such collection or alias "
                    f"({detail}): has the pipeline indexed anything yet?"
                ) from exc
            if (exc.status_code or 0) >= 500:
                raise StoreUnavailable(
                    f"{what}: {where}the Qdrant server at {self.location} failed ({exc.status_code}: "
                    f"{detail}); retry when it is healthy (GET {self.location}/readyz)"
                ) from exc
            raise StoreError(
                f"{what}: {where}{self.location} refused the request ({exc.status_code}: {detail})"
            ) from exc
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.NOT_FOUND:
                raise CollectionMissing(
                    f"{what}: {where}the Qdrant server at {self.location} has no such collection or alias "
                    f"({exc.details() if hasattr(exc, 'details') else exc})"
                ) from exc
            if code in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.ALREADY_EXISTS,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                raise StoreError(f"{what}: {where}{self.location} refused the request ({exc})") from exc
            raise StoreUnavailable(
                f"{what}: cannot reach the Qdrant server at {self.location} over gRPC ({code}); is it running?"
            ) from exc
        except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable(
                f"{what}: cannot reach the Qdrant server at {self.location} ({exc}); is it running? "
                "(`streamrag stack status`, or check STREAMRAG_QDRANT_URL)"
            ) from exc

    # --- collections and aliases ---------------------------------------------------------------

    def check_version(self) -> str:
        """The server's version; raises StoreError if qdrant-client does not support it."""
        info = self._call("version", None, lambda: self.client.info())
        version = str(info.version)
        import qdrant_client

        client_version = getattr(qdrant_client, "__version__", None) or _dist_version()
        if client_version and not _compatible(client_version, version):
            raise StoreError(
                f"the Qdrant server at {self.location} is {version}; qdrant-client {client_version} supports "
                "servers at most one minor version apart. Upgrade the server or pin a matching client."
            )
        return version

    def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        def existing_dims() -> dict[str, int] | None:
            try:
                info = self.client.get_collection(name)
            except UnexpectedResponse as exc:
                if exc.status_code == 404:
                    return None
                raise
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            vectors = info.config.params.vectors
            if isinstance(vectors, dict):
                return {k: v.size for k, v in vectors.items()}
            return {} if vectors is None else {"": vectors.size}

        dims = self._call("ensure collection", name, existing_dims)
        if dims is None:
            self._call("create collection", name, lambda: self._create(name, spec))
            dims = self._call("ensure collection", name, existing_dims) or {}
        want = dict(spec.dense)
        if {k: dims.get(k) for k in want} != want:
            raise StoreError(
                f"collection {name!r} on {self.location} has dense vectors {dims}, this model needs {want}: "
                "re-index into a new collection (`streamrag train reindex`) or drop it to rebuild it from Kafka"
            )
        indexes = [(k, qm.PayloadSchemaType.KEYWORD) for k in spec.keyword_indexes]
        indexes += [(k, qm.PayloadSchemaType.INTEGER) for k in spec.integer_indexes]
        for key, schema in indexes:  # creating an index that exists is a no-op
            self._call(
                "payload index",
                name,
                lambda k=key, t=schema: self.client.create_payload_index(name, k, t, wait=True),  # type: ignore[misc]
            )

    def _create(self, name: str, spec: CollectionSpec) -> None:
        sparse = list(spec.sparse) or ([] if spec.dense else [PAYLOAD_ONLY])
        try:
            self.client.create_collection(
                name,
                vectors_config={
                    k: qm.VectorParams(size=v, distance=qm.Distance.COSINE) for k, v in spec.dense.items()
                },
                sparse_vectors_config={
                    k: qm.SparseVectorParams(modifier=qm.Modifier.IDF if spec.idf else None) for k in sparse
                },
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
                write_consistency_factor=self.write_consistency_factor,
            )
        except UnexpectedResponse as exc:
            if exc.status_code not in (400, 409) or "already exists" not in _detail(exc):
                raise  # another process created it meanwhile: done
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS and "already exists" not in str(exc):
                raise

    def exists(self, name: str) -> bool:
        return bool(self._call("collection exists", name, lambda: self.client.collection_exists(name)))

    def collections(self) -> list[str]:
        found = self._call("list collections", None, lambda: self.client.get_collections())
        return sorted(c.name for c in found.collections)

    def drop(self, name: str) -> None:
        self._call("drop collection", name, lambda: self.client.delete_collection(name))

    def count(self, name: str, where: Where = ()) -> int:
        found = self._call(
            "count", name, lambda: self.client.count(name, count_filter=_filter(where), exact=True)
        )
        return int(found.count)

    def aliases(self) -> dict[str, str]:
        found = self._call("list aliases", None, lambda: self.client.get_aliases())
        return {a.alias_name: a.collection_name for a in found.aliases}

    def resolve(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def point_alias(self, alias: str, target: str) -> None:
        ops: list[Any] = []
        if alias in self.aliases():
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(
            qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=target, alias_name=alias))
        )
        # One request carries the delete and the create: Qdrant applies them atomically.
        try:
            self._call(
                "point alias",
                target,
                lambda: self.client.update_collection_aliases(change_aliases_operations=ops),
            )
        except StoreError:
            if self.resolve(alias) != target:  # not another process's identical switch meanwhile
                raise

    # --- points --------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [
            qm.PointStruct(id=p.id, vector={k: _vector(v) for k, v in p.vectors.items()}, payload=p.payload)
            for p in points
        ]
        self._call(
            "upsert",
            name,
            lambda: self.client.upsert(name, points=structs, wait=True, ordering=self.ordering),
        )

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            selector = qm.PointIdsList(points=list(ids))
            self._call(
                "delete",
                name,
                lambda: self.client.delete(name, points_selector=selector, wait=True, ordering=self.ordering),
            )

    def retrieve(
        self, name: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Payload]:
        if not ids:
            return {}
        found = self._call(
            "retrieve",
            name,
            lambda: self.client.retrieve(
                name,
                ids=list(ids),
                with_payload=_with_payload(fields),
                with_vectors=False,
                consistency=self._read,
            ),
        )
        return {str(p.id): as_payload(p.payload) for p in found}

    def scroll(
        self, name: str, where: Where = (), fields: Sequence[str] | None = None, page: int = 1024
    ) -> Iterator[tuple[str, Payload]]:
        flt = _filter(where)
        offset: Any = None
        while True:
            points, offset = self._call(
                "scroll",
                name,
                lambda o=offset: self.client.scroll(  # type: ignore[misc]
                    name,
                    scroll_filter=flt,
                    limit=page,
                    offset=o,
                    with_payload=_with_payload(fields),
                    with_vectors=False,
                    consistency=self._read,
                ),
            )
            for p in points:
                yield str(p.id), as_payload(p.payload)
            if offset is None:
                return

    def search(self, name: str, requests: Sequence[Nearest]) -> list[list[Scored]]:
        if not requests:
            return []
        batch = [
            qm.QueryRequest(
                query=_vector(r.vector),
                using=r.using,
                filter=_filter(r.where),
                limit=r.limit,
                with_payload=_with_payload(r.fields),
                with_vector=False,
                params=_params(r),
            )
            for r in requests
        ]
        answers = self._call("search", name, lambda: self.client.query_batch_points(name, requests=batch))
        return [[Scored(str(p.id), float(p.score), as_payload(p.payload)) for p in a.points] for a in answers]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _grpc_port(url: str) -> int:
    """Qdrant's convention: gRPC on the HTTP port + 1 (6333 -> 6334)."""
    from urllib.parse import urlparse

    return (urlparse(url).port or 6333) + 1


def _vector(v: Sequence[float] | SparseVector) -> Any:
    if isinstance(v, SparseVector):
        return qm.SparseVector(indices=list(v.indices), values=list(v.values))
    return list(v)


def _params(r: Nearest) -> Any:
    if not (r.ef or r.exact or r.acorn):
        return None
    acorn = qm.AcornSearchParams(enable=True) if r.acorn else None
    return qm.SearchParams(hnsw_ef=r.ef, exact=r.exact, acorn=acorn)


def _with_payload(fields: Sequence[str] | None) -> Any:
    if fields is None:
        return True
    return list(fields) if fields else False


def _condition(m: Match) -> Any:
    if len(m.values) == 1:
        return qm.FieldCondition(key=m.key, match=qm.MatchValue(value=m.values[0]))
    kinds = {type(v) for v in m.values}
    if kinds <= {str} or kinds <= {int}:
        return qm.FieldCondition(key=m.key, match=qm.MatchAny(any=list(m.values)))
    return qm.Filter(should=[qm.FieldCondition(key=m.key, match=qm.MatchValue(value=v)) for v in m.values])


def _filter(where: Where) -> qm.Filter | None:
    return qm.Filter(must=[_condition(m) for m in where]) if where else None


def _detail(exc: UnexpectedResponse) -> str:
    with contextlib.suppress(Exception):
        body = exc.structured()
        return str(body.get("status", {}).get("error", body))
    return str(exc.content[:300] if exc.content else exc.reason_phrase)


def _dist_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qdrant-client")
    except PackageNotFoundError:
        return None


def _compatible(client: str, server: str) -> bool:
    """qdrant-client's rule: the same major version and minor versions at most one apart."""
    try:
        cmaj, cmin = (int(x) for x in client.split(".")[:2])
        smaj, smin = (int(x) for x in server.split(".")[:2])
    except ValueError:
        return True  # a development build: do not refuse it
    return cmaj == smaj and abs(cmin - smin) <= 1
