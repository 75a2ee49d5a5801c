"""Burrow-style consumer status: pure rules over a partition's history of offset samples.

A sample is what one look at the cluster saw for one (group, topic, partition): when (epoch
seconds), the committed offset (``None`` while the group has committed nothing there) and the lag
in messages. The rules look at a sliding window of ``window_s`` seconds ending at the newest sample
and, for STOPPED, at how long the committed offset has stood still. They are checked in this order;
the first that matches wins:

1. ``REWOUND``: the committed offset moved back between two consecutive samples inside the window
   (an offset reset or a consumer that committed an old position). Reported while the move is in
   the window, whatever the lag.
2. ``OK``: the newest lag is 0: the consumer has caught up.
3. ``STOPPED``: the partition has been *stuck* for at least ``stopped_after_s``.
4. ``STALLED``: the partition has been stuck for at least ``window_s``, i.e. over the whole window.
5. ``LAGGING``: at least two samples in the window, the lag is above 0 in every one of them, never
   shrinks from one sample to the next and is larger at the end than at the start.
6. ``OK`` otherwise.

*Stuck* means: the committed offset equals the newest committed offset and the lag is above 0, in
every sample of the trailing run that ends at the newest sample. The run starts at the later of the
last change of the committed offset and the last sample with lag 0: a consumer with nothing to read
cannot be blamed for not committing (Burrow's "lag was zero in the window means OK" rule). The
history only reaches so far back, so the stuck time is a lower bound once the run covers all of it.

Kafka's admin API does not say when a group last committed, only what, so "no commit" here means
"the committed offset did not change". STALLED is the early warning (stuck for a window), STOPPED
the escalation (stuck past a longer threshold); with ``stopped_after_s < window_s`` STOPPED comes
first.

A group's status is the worst of its partitions' statuses in the order of :data:`STATUS_CODES`
(the numeric code exported as ``streamrag_consumergroup_status``). As in Burrow, a rewind ranks
worst: it means messages are being processed twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Status(StrEnum):
    OK = "OK"
    LAGGING = "LAGGING"
    STALLED = "STALLED"
    STOPPED = "STOPPED"
    REWOUND = "REWOUND"


STATUS_CODES: Final[dict[Status, int]] = {
    Status.OK: 0,
    Status.LAGGING: 1,
    Status.STALLED: 2,
    Status.STOPPED: 3,
    Status.REWOUND: 4,
}
"""Numeric code per status, also the severity order (larger is worse)."""


@dataclass(frozen=True, slots=True)
class OffsetSample:
    """One observation of one partition for one group."""

    ts: float
    """When it was taken, epoch seconds."""
    committed: int | None
    """The group's committed offset; ``None`` when the group has committed nothing on the partition."""
    lag: int
    """Messages not yet consumed."""


@dataclass(frozen=True, slots=True)
class StatusRules:
    """Thresholds of the rules, in seconds."""

    window_s: float
    stopped_after_s: float

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.stopped_after_s <= 0:
            raise ValueError("window_s and stopped_after_s must be positive")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A partition's status, why, and for how long it has been stuck (0 unless stuck)."""

    status: Status
    reason: str
    stuck_s: float = 0.0


def evaluate_partition(samples: Sequence[OffsetSample], rules: StatusRules) -> Verdict:
    """The status of one partition from its samples (any order; the newest one is "now")."""
    if not samples:
        return Verdict(Status.OK, "no samples yet")
    history = sorted(samples, key=lambda s: s.ts)
    last = history[-1]
    window_start = last.ts - rules.window_s

    rewind = _rewind_in_window(history, window_start)
    if rewind is not None:
        before, after = rewind
        return Verdict(
            Status.REWOUND,
            f"committed offset moved back from {before.committed} to {after.committed} "
            f"{last.ts - after.ts:.1f} s ago",
        )
    if last.lag == 0:
        return Verdict(Status.OK, "caught up (lag 0)")

    stuck_s = last.ts - _stuck_since(history)
    if stuck_s >= rules.stopped_after_s:
        return Verdict(
            Status.STOPPED,
            f"committed offset {_fmt(last.committed)} unchanged for {stuck_s:.1f} s with lag {last.lag} "
            f"(stopped after {rules.stopped_after_s:g} s)",
            stuck_s,
        )
    if stuck_s >= rules.window_s:
        return Verdict(
            Status.STALLED,
            f"committed offset {_fmt(last.committed)} unchanged over the {rules.window_s:g} s window "
            f"with lag {last.lag}",
            stuck_s,
        )

    window = [s for s in history if s.ts >= window_start]
    if _growing(window):
        return Verdict(
            Status.LAGGING,
            f"lag grew from {window[0].lag} to {last.lag} over {last.ts - window[0].ts:.1f} s",
            stuck_s,
        )
    return Verdict(Status.OK, f"lag {last.lag}, not growing", stuck_s)


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (:data:`STATUS_CODES` order); ``OK`` for none."""
    return max(statuses, key=STATUS_CODES.__getitem__, default=Status.OK)


def _rewind_in_window(
    history: Sequence[OffsetSample], window_start: float
) -> tuple[OffsetSample, OffsetSample] | None:
    """The newest consecutive pair whose later sample is in the window and whose offset went back."""
    for before, after in reversed(list(itertools.pairwise(history))):
        if after.ts < window_start:
            break
        if (
            before.committed is not None
            and after.committed is not None
            and after.committed < before.committed
        ):
            return before, after
    return None


def _stuck_since(history: Sequence[OffsetSample]) -> float:
    """Start of the trailing run with the newest committed offset and lag > 0 (its first sample's ts)."""
    last = history[-1]
    since = last.ts
    for sample in reversed(history):
        if sample.committed != last.committed or sample.lag == 0:
            break
        since = sample.ts
    return since


def _growing(window: Sequence[OffsetSample]) -> bool:
    if len(window) < 2 or any(s.lag == 0 for s in window):
        return False
    never_shrinks = all(b.lag >= a.lag for a, b in itertools.pairwise(window))
    return never_shrinks and window[-1].lag > window[0].lag


def _fmt(offset: int | None) -> str:
    return "none" if offset is None else str(offset)
