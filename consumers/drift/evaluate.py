"""Which detector judges which kind, and the :class:`DriftEvent` a positive check becomes; pure.

* ``document_embedding``, ``query_embedding``: MMD² permutation test (score and threshold in MMD²);
* ``retrieval_score``: drop of the mean top-1 score (reference - current, cosine units);
* ``dont_know_rate``: rise of the share of "don't know" answers (current - reference, 0..1).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from consumers.drift.detectors import DetectorResult, mean_drop, mmd_permutation_test, rate_rise
from consumers.drift.observations import EMBEDDING_KINDS, Kind
from consumers.drift.settings import DriftOptions
from consumers.drift.windows import WindowPair
from streamrag.contracts import DriftEvent, utcnow


def detect(kind: Kind, pair: WindowPair, options: DriftOptions) -> DetectorResult:
    """Run the detector of ``kind`` on the two windows (CPU only; milliseconds to ~0.5 s)."""
    if kind in EMBEDDING_KINDS:
        return mmd_permutation_test(
            pair.reference, pair.current, n_permutations=options.mmd_permutations,
            alpha=options.mmd_alpha, min_statistic=options.mmd_min_statistic, seed=options.mmd_seed,
        )  # fmt: skip
    if kind == "retrieval_score":
        return mean_drop(pair.reference[:, 0], pair.current[:, 0], options.score_drop_threshold)
    if kind == "dont_know_rate":
        return rate_rise(pair.reference[:, 0], pair.current[:, 0], options.dont_know_rise_threshold)
    raise ValueError(f"no detector for kind {kind!r}")


def drift_event(
    tenant: str, kind: Kind, model_id: str, pair: WindowPair, result: DetectorResult,
    detected_at: datetime | None = None,
) -> DriftEvent:  # fmt: skip
    """The event to publish for a positive check.

    ``reference_window`` and ``current_window`` are the window summaries (size, first_ts, last_ts,
    span_s, offsets per ``topic:partition`` as ``[first, last]``) plus ``model_id``; the current
    window also carries ``test``: the detector's details (p-value, bandwidth, means, ...).
    """
    common: dict[str, Any] = {"model_id": model_id}
    return DriftEvent(
        event_id=str(uuid.uuid4()),
        tenant=tenant,
        kind=kind,
        score=result.score,
        threshold=result.threshold,
        reference_window={**pair.reference_summary, **common},
        current_window={**pair.current_summary, **common, "test": dict(result.details)},
        feature_offsets=dict(pair.feature_offsets),
        detected_at=detected_at or utcnow(),
    )
