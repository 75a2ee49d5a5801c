"""The storage port (:class:`VectorStore`) and its two adapters on real Qdrant engines.

- :class:`~streamrag.store.edge.EdgeStore`: Qdrant Edge, Qdrant's engine in-process (the default;
  one process owns a folder).
- :class:`~streamrag.store.server.ServerStore`: a Qdrant server or cluster over its REST API.

Nothing outside this package imports ``qdrant_client`` or ``qdrant_edge``.
"""

from streamrag.store.records import (
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
    VectorStore,
    Where,
)

__all__ = [
    "CollectionMissing",
    "CollectionSpec",
    "Match",
    "Nearest",
    "Payload",
    "Point",
    "Scored",
    "SparseVector",
    "StoreError",
    "StoreUnavailable",
    "VectorStore",
    "Where",
]
