"""Contract records -> keyed observations, the unit the windows consume; pure, no I/O.

A :class:`~streamrag.contracts.FeatureRecord` of a document's first chunk gives one
``document_embedding`` observation; its other chunks give none. The permutation test behind the
embedding detector assumes exchangeable observations, and the chunks of one document are not: a
window of 300 chunks holds a couple of dozen documents, so it fired on the change of subject from
one batch of man pages to the next (2 events inside 200 shuffled man pages, bench/domain_loop.py).
One observation per document version makes the window a sample of documents. A
:class:`~streamrag.contracts.QueryRecord` gives up to three: ``query_embedding`` (when it carries an
embedding), ``retrieval_score`` (its ``top_score``, when set) and, for the ``answer`` endpoint
only, ``dont_know_rate`` (1.0 when the answer was "don't know", else 0.0; search requests have no
answer, so counting them would dilute the rate).

Observations travel on the app's internal topic keyed by tenant, so all observations of a tenant
meet in one partition and one table shard. Windows are scoped by ``(tenant, kind, model_id)``:
embeddings (and scores) of different models are not comparable, so a model switch starts fresh
windows instead of raising a drift event on the switch itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import numpy as np

from consumers.drift.windows import Observation
from streamrag.contracts import FeatureRecord, QueryRecord

Kind = Literal["document_embedding", "query_embedding", "retrieval_score", "dont_know_rate"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
EMBEDDING_KINDS: Final[frozenset[Kind]] = frozenset({"document_embedding", "query_embedding"})


class InvalidRecord(ValueError):
    """A record parsed as its contract but cannot be observed (e.g. an empty or non-finite embedding)."""


@dataclass(frozen=True)
class KeyedObservation:
    """An :class:`Observation` with the scope of the windows it belongs to."""

    tenant: str
    kind: Kind
    model_id: str
    observation: Observation

    @property
    def key(self) -> bytes:
        """The Kafka key on the observations topic: the tenant, so a tenant stays on one partition."""
        return self.tenant.encode()

    @property
    def scope(self) -> str:
        """Window scope inside the tenant: ``kind@model_id``."""
        return f"{self.kind}@{self.model_id}"

    def to_bytes(self) -> bytes:
        body = {"tenant": self.tenant, "kind": self.kind, "model_id": self.model_id,
                **self.observation.to_state()}  # fmt: skip
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyedObservation:
        """Inverse of :meth:`to_bytes`; raises ValueError (or KeyError) on a malformed message."""
        data: dict[str, Any] = json.loads(raw)
        kind = data["kind"]
        if kind not in KINDS:
            raise InvalidRecord(f"unknown kind {kind!r}")
        return cls(str(data["tenant"]), kind, str(data["model_id"]), Observation.from_state(data))


def _vector(values: list[float], what: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InvalidRecord(f"{what} must be a non-empty vector of finite numbers")
    return arr


def _ts(value: datetime) -> float:
    return value.timestamp()


def from_feature(raw: bytes, topic: str, partition: int, offset: int) -> list[KeyedObservation]:
    """The observations of one FeatureRecord value; raises ValueError if it does not parse."""
    record = FeatureRecord.model_validate_json(raw)
    if record.chunk_index != 0:
        return []  # one observation per document version (module docstring)
    obs = Observation(
        _vector(record.embedding, "embedding"), _ts(record.indexed_ts), f"{topic}:{partition}", offset
    )
    return [KeyedObservation(record.tenant, "document_embedding", record.model_id, obs)]


def from_query(raw: bytes, topic: str, partition: int, offset: int) -> list[KeyedObservation]:
    """The observations of one QueryRecord value (zero to three); raises ValueError if it does not parse."""
    record = QueryRecord.model_validate_json(raw)
    source, ts = f"{topic}:{partition}", _ts(record.ts)

    def scalar(value: float) -> Observation:
        return Observation(np.asarray([value], dtype=np.float32), ts, source, offset)

    out: list[KeyedObservation] = []
    if record.embedding is not None:
        obs = Observation(_vector(record.embedding, "embedding"), ts, source, offset)
        out.append(KeyedObservation(record.tenant, "query_embedding", record.model_id, obs))
    if record.top_score is not None and math.isfinite(record.top_score):
        score = scalar(record.top_score)
        out.append(KeyedObservation(record.tenant, "retrieval_score", record.model_id, score))
    if record.endpoint == "answer":
        flag = 1.0 if record.dont_know else 0.0
        out.append(KeyedObservation(record.tenant, "dont_know_rate", record.model_id, scalar(flag)))
    return out
