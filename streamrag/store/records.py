"""The storage port's typed records: what every part of streamrag says to a vector store.

Nothing here knows an engine. The adapters (:mod:`streamrag.store.edge` for the embedded Qdrant
Edge engine, :mod:`streamrag.store.server` for a Qdrant server or cluster) translate these into
the engine's own requests, so the pipeline, the API, training and re-index are written once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

#: A payload as stored and read back: JSON values only.
Payload = dict[str, Any]

#: The vector name of a collection that holds payloads alone (a :class:`CollectionSpec` with no
#: vectors): both engines need one vector config, and a sparse vector may be absent from a point.
PAYLOAD_ONLY = "payload_only"


@dataclass(frozen=True, slots=True)
class Match:
    """A payload condition: the value at ``key`` (dotted for nested objects) equals one of ``values``.

    A filter is a sequence of these, all of which must hold. That is every condition streamrag
    needs (a tenant, a document key set, metadata equality), and both engines index it.
    """

    key: str
    values: tuple[Any, ...]

    @classmethod
    def eq(cls, key: str, value: Any) -> Match:
        return cls(key, (value,))

    @classmethod
    def any_of(cls, key: str, values: Sequence[Any]) -> Match:
        return cls(key, tuple(values))


Where = Sequence[Match]


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: Sequence[int]
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Point:
    """One point to write: a uuid string id, named vectors and a payload."""

    id: str
    vectors: Mapping[str, Sequence[float] | SparseVector]
    payload: Payload


class Scored(NamedTuple):
    """A search hit: the point id, its score and the payload fields asked for."""

    id: str
    score: float
    payload: Payload


@dataclass(frozen=True, slots=True)
class Nearest:
    """One nearest-neighbour search: ``vector`` (dense list or :class:`SparseVector`) against the
    named vector ``using``, restricted by ``where``, returning ``limit`` hits with ``fields``
    (``None``: the whole payload; ``()``: none)."""

    vector: Sequence[float] | SparseVector
    using: str
    limit: int
    where: Where = ()
    fields: Sequence[str] | None = None
    #: HNSW beam width for this search (``None``: the engine's default); ``exact`` scans instead
    ef: int | None = None
    exact: bool = False
    #: filtered HNSW search that also walks two-hop neighbours (Qdrant's ACORN), for filters
    #: that pass a minority of points
    acorn: bool = False


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """What a collection holds: named dense vectors (cosine), named sparse vectors (dot, with IDF
    when ``idf``), and the payload fields to index as keywords or integers. With no vectors at all
    it holds payloads alone (registries, histories), written as points with no vectors."""

    dense: Mapping[str, int] = field(default_factory=dict)
    sparse: Sequence[str] = ()
    idf: bool = True
    keyword_indexes: Sequence[str] = ()
    integer_indexes: Sequence[str] = ()


class StoreError(RuntimeError):
    """A store request failed for a reason the caller should show as is: the message names the
    store's location (URL or path), the collection and what to do."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (a server down or restarting). Retrying later can succeed;
    the API answers 503 with this message."""


class CollectionMissing(StoreError):
    """The collection (or the alias) does not exist."""


class VectorStore(Protocol):
    """The storage port. Writes return only once the engine has acknowledged them durably (the
    caller commits Kafka offsets after that), and every write is idempotent by point id."""

    #: where the store is, for messages: a URL or a folder
    location: str

    # --- collections and aliases ------------------------------------------------------------
    def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        """Create ``name`` with ``spec`` unless it exists (another process creating it at the same
        time is no error). An existing collection whose dense sizes differ raises StoreError."""
        ...

    def exists(self, name: str) -> bool: ...
    def collections(self) -> list[str]: ...
    def drop(self, name: str) -> None: ...
    def count(self, name: str, where: Where = ()) -> int: ...
    def resolve(self, alias: str) -> str | None:
        """The collection ``alias`` points at (``None``: no such alias)."""
        ...

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points at."""
        ...

    def point_alias(self, alias: str, target: str) -> None:
        """Create or repoint ``alias`` to ``target`` atomically: a reader resolves the old or the
        new collection, never neither."""
        ...

    # --- points -------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None: ...
    def delete(self, name: str, ids: Sequence[str]) -> None: ...
    def retrieve(
        self, name: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, Payload]:
        """Payloads (or ``fields`` of them) of the points among ``ids`` that exist."""
        ...

    def scroll(
        self, name: str, where: Where = (), fields: Sequence[str] | None = None, page: int = 1024
    ) -> Iterator[tuple[str, Payload]]:
        """Every point matching ``where`` as ``(id, payload fields)``, in pages of ``page``."""
        ...

    def search(self, name: str, requests: Sequence[Nearest]) -> list[list[Scored]]:
        """One answer per request, in order (a server gets them in one batch request)."""
        ...

    def close(self) -> None: ...


def as_payload(value: Any) -> Payload:
    return dict(value) if value else {}
