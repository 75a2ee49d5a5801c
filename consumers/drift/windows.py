"""Reference and current windows of one (tenant, scope), kept in a string-keyed mapping.

The scope is what is compared inside a tenant; the app uses ``kind@model_id``.

Life cycle of a (tenant, scope):

1. the first ``reference_size`` observations fill the *reference* window;
2. later observations go to the *current* window, a ring of the last ``window_size`` observations;
3. once the current window is full it is evaluated, then every ``evaluate_every`` observations;
4. after a drift event (:meth:`DriftWindows.reset_after_drift`) both windows are emptied and the
   reference refills from the next observations, i.e. from the new regime. The current window is
   *not* promoted to reference: at detection it still mixes the old and the new regime, and
   comparing the pure new regime against that mix later would fire a second event for the same
   shift. On top of that, no evaluation happens until ``cooldown_items`` observations have passed
   since the event, which bounds how often one (tenant, scope) can trigger training.

Storage (the mapping is a Faust table in production, a dict in tests). Every value is small and
JSON-ready, so one observation costs one ~2 KiB changelog record for a 384-d embedding, not a
rewrite of the whole window:

* ``<tenant>/<scope>/meta`` -> counters and the last source offset seen per ``topic:partition``;
* ``<tenant>/<scope>/ref/<i>`` and ``<tenant>/<scope>/cur/<i>`` -> one :class:`Observation` each
  (``cur`` is a ring indexed by ``count % window_size``).

Duplicates: an observation whose source offset is not above the last one seen for its
``topic:partition`` is ignored, so redelivery after a crash (at-least-once) does not count an item
twice. This relies on each source partition's order being kept up to here.
"""

from __future__ import annotations

import base64
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

STATE_VERSION: Final = 1


def encode_vector(vector: npt.ArrayLike) -> str:
    """A 1-d vector as base64 of little-endian float32 (4 bytes per component, exact round trip)."""
    arr = np.asarray(vector, dtype="<f4").ravel()
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_vector(data: str) -> Vector:
    """Inverse of :func:`encode_vector`."""
    return np.frombuffer(base64.b64decode(data), dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Observation:
    """One item of a window: a value (an embedding, or a 1-component vector for scalar signals)
    and where it came from. ``ts`` is the source event time in epoch seconds (UTC)."""

    value: Vector
    ts: float
    source: str
    """``topic:partition`` of the source record."""
    offset: int

    def to_state(self) -> dict[str, Any]:
        return {"x": encode_vector(self.value), "ts": self.ts, "src": self.source, "o": self.offset}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Observation:
        return cls(decode_vector(data["x"]), float(data["ts"]), str(data["src"]), int(data["o"]))


@dataclass(frozen=True)
class WindowConfig:
    """Window sizes, in observations."""

    reference_size: int
    window_size: int
    evaluate_every: int
    cooldown_items: int

    def __post_init__(self) -> None:
        # two-sample statistics need at least two items per sample
        if self.reference_size < 2 or self.window_size < 2:
            raise ValueError("reference_size and window_size must be >= 2")
        if self.evaluate_every < 1:
            raise ValueError("evaluate_every must be >= 1")
        if self.cooldown_items < 0:
            raise ValueError("cooldown_items must be >= 0")


@dataclass(frozen=True)
class WindowPair:
    """A reference and a current window ready to be compared.

    ``reference`` and ``current`` are (n x d) float32 matrices; the summaries are JSON-ready
    (see :func:`summarize`); ``feature_offsets`` maps ``topic:partition`` to the last source offset
    this (tenant, scope) has consumed.
    """

    reference: Vector
    current: Vector
    reference_summary: dict[str, Any]
    current_summary: dict[str, Any]
    feature_offsets: dict[str, int]


def summarize(items: list[Observation]) -> dict[str, Any]:
    """Size, time span (ISO-8601 UTC and seconds) and per ``topic:partition`` offset range."""
    times = [o.ts for o in items]
    offsets: dict[str, list[int]] = {}
    for o in items:
        lo_hi = offsets.setdefault(o.source, [o.offset, o.offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], o.offset), max(lo_hi[1], o.offset)
    return {
        "size": len(items),
        "first_ts": datetime.fromtimestamp(min(times), UTC).isoformat() if times else None,
        "last_ts": datetime.fromtimestamp(max(times), UTC).isoformat() if times else None,
        "span_s": (max(times) - min(times)) if times else 0.0,
        "offsets": offsets,
    }


def _fresh_meta() -> dict[str, Any]:
    # ref_n: observations in the reference; cur_n: observations added to the current ring since
    # the reference filled; since_event: observations since the last drift event (None: none yet)
    return {"v": STATE_VERSION, "ref_n": 0, "cur_n": 0, "since_event": None, "events": 0, "offsets": {}}


class DriftWindows:
    """The windows of one (tenant, scope) inside ``store``; cheap to create per observation."""

    def __init__(
        self, store: MutableMapping[str, Any], tenant: str, scope: str, config: WindowConfig
    ) -> None:  # fmt: skip
        self._store = store
        self._config = config
        # quoting keeps keys unambiguous whatever characters the tenant or a model id hold
        self._prefix = f"{quote(tenant, safe='')}/{quote(scope, safe='@')}"

    def _key(self, *parts: object) -> str:
        return "/".join([self._prefix, *(str(p) for p in parts)])

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the counters: ``ref_n``, ``cur_n``, ``since_event``, ``events``, ``offsets``."""
        stored = self._store.get(self._key("meta"))
        return dict(stored) if stored else _fresh_meta()

    def _save_meta(self, meta: dict[str, Any]) -> None:
        # always assign a new dict: a Faust table only writes its changelog on assignment
        self._store[self._key("meta")] = meta

    def add(self, obs: Observation) -> WindowPair | None:
        """Record one observation; return the windows when an evaluation is due, else None.

        Returns None for a duplicate (source offset already seen), while the reference fills,
        while the current window fills, between evaluation points and during the cooldown.
        """
        cfg = self._config
        meta = self.meta
        offsets = dict(meta["offsets"])
        if obs.offset <= offsets.get(obs.source, -1):
            return None
        offsets[obs.source] = obs.offset
        meta["offsets"] = offsets
        if meta["since_event"] is not None:
            meta["since_event"] += 1

        if meta["ref_n"] < cfg.reference_size:
            self._store[self._key("ref", meta["ref_n"])] = obs.to_state()
            meta["ref_n"] += 1
            self._save_meta(meta)
            return None

        self._store[self._key("cur", meta["cur_n"] % cfg.window_size)] = obs.to_state()
        meta["cur_n"] += 1
        self._save_meta(meta)
        if meta["cur_n"] < cfg.window_size or (meta["cur_n"] - cfg.window_size) % cfg.evaluate_every:
            return None
        if meta["since_event"] is not None and meta["since_event"] < cfg.cooldown_items:
            return None
        return self.pair(meta)

    def pair(self, meta: dict[str, Any] | None = None) -> WindowPair:
        """The current reference and current windows (whatever their fill level)."""
        meta = meta or self.meta
        reference = self._items("ref", min(meta["ref_n"], self._config.reference_size))
        current = self._items("cur", min(meta["cur_n"], self._config.window_size))
        return WindowPair(
            reference=np.stack([o.value for o in reference]) if reference else np.empty((0, 0), np.float32),
            current=np.stack([o.value for o in current]) if current else np.empty((0, 0), np.float32),
            reference_summary=summarize(reference),
            current_summary=summarize(current),
            feature_offsets=dict(meta["offsets"]),
        )

    def _items(self, part: str, count: int) -> list[Observation]:
        return [Observation.from_state(self._store[self._key(part, i)]) for i in range(count)]

    def reset_after_drift(self) -> None:
        """Start over after a drift event: the reference refills from the next observations and
        no evaluation happens for ``cooldown_items`` observations. Offsets seen are kept."""
        meta = self.meta
        meta.update(ref_n=0, cur_n=0, since_event=0, events=meta["events"] + 1)
        # stale ref/cur slots are overwritten as the windows refill, and never read before that
        self._save_meta(meta)
