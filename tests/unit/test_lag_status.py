"""The Burrow-style status rules on synthetic offset histories (pure logic, no Kafka)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.lag.status import (
    STATUS_CODES,
    OffsetSample,
    Status,
    StatusRules,
    evaluate_partition,
    worst,
)

RULES = StatusRules(window_s=10.0, stopped_after_s=30.0)


def history(*points: tuple[int | None, int], step: float = 1.0, start: float = 1000.0) -> list[OffsetSample]:
    """Samples ``step`` seconds apart from ``(committed, lag)`` pairs."""
    return [OffsetSample(start + i * step, committed, lag) for i, (committed, lag) in enumerate(points)]


def status(samples: list[OffsetSample], rules: StatusRules = RULES) -> Status:
    return evaluate_partition(samples, rules).status


# --- OK -------------------------------------------------------------------------------------------


def test_no_samples_is_ok() -> None:
    verdict = evaluate_partition([], RULES)
    assert verdict.status is Status.OK
    assert "no samples" in verdict.reason


def test_zero_lag_is_ok_even_when_the_offset_never_moves() -> None:
    # An idle consumer with nothing to read does not commit: that is not a stall.
    assert status(history(*[(50, 0)] * 60)) is Status.OK


def test_single_sample_with_lag_is_ok() -> None:
    assert status(history((10, 5))) is Status.OK


def test_moving_offset_with_steady_lag_is_ok() -> None:
    samples = history(*[(10 + 5 * i, 7) for i in range(20)])
    verdict = evaluate_partition(samples, RULES)
    assert verdict.status is Status.OK
    assert verdict.stuck_s == 0.0


# --- LAGGING --------------------------------------------------------------------------------------


def test_lag_growing_over_the_window_is_lagging() -> None:
    samples = history(*[(10 + i, 3 + 2 * i) for i in range(8)])
    verdict = evaluate_partition(samples, RULES)
    assert verdict.status is Status.LAGGING
    assert "grew from 3 to 17" in verdict.reason


def test_two_samples_suffice_for_lagging() -> None:
    assert status(history((10, 4), (11, 6))) is Status.LAGGING


def test_lag_that_shrinks_once_in_the_window_is_not_lagging() -> None:
    samples = history((10, 3), (11, 5), (14, 4), (15, 8), (16, 9))
    assert status(samples) is Status.OK


def test_a_zero_lag_in_the_window_means_ok() -> None:
    samples = history((10, 0), (10, 2), (11, 5), (12, 9))
    assert status(samples) is Status.OK


def test_flat_lag_with_moving_offset_is_not_lagging() -> None:
    assert status(history((10, 5), (12, 5), (14, 5))) is Status.OK


def test_growth_before_the_window_is_ignored() -> None:
    # Lag grew long ago (outside the 10 s window) and has been shrinking within it.
    old = history(*[(10 + i, 1 + i) for i in range(10)], start=1000.0)
    recent = history(*[(100 + 3 * i, 40 - i) for i in range(10)], start=1020.0)
    assert status(old + recent) is Status.OK


# --- STALLED and STOPPED --------------------------------------------------------------------------


def test_offset_not_moving_over_the_whole_window_is_stalled() -> None:
    samples = history(*[(10, 5)] * 11)  # 0..10 s: exactly one window
    verdict = evaluate_partition(samples, RULES)
    assert verdict.status is Status.STALLED
    assert verdict.stuck_s == pytest.approx(10.0)
    assert "unchanged over the 10 s window" in verdict.reason


def test_offset_not_moving_for_less_than_the_window_is_not_stalled() -> None:
    assert status(history(*[(10, 5)] * 10)) is Status.OK  # 9 s


def test_stalled_becomes_stopped_after_the_threshold() -> None:
    statuses = [status(history(*[(10, 5)] * n)) for n in (5, 11, 25, 31, 40)]
    assert statuses == [Status.OK, Status.STALLED, Status.STALLED, Status.STOPPED, Status.STOPPED]


def test_growing_lag_with_a_stuck_offset_escalates_from_lagging_to_stalled() -> None:
    samples = history(*[(10, 5 + i) for i in range(12)])
    assert status(samples[:5]) is Status.LAGGING
    assert status(samples) is Status.STALLED


def test_stopped_before_stalled_when_the_threshold_is_shorter_than_the_window() -> None:
    rules = StatusRules(window_s=20.0, stopped_after_s=5.0)
    assert status(history(*[(10, 5)] * 7), rules) is Status.STOPPED


def test_stuck_time_counts_from_the_last_commit() -> None:
    samples = history(*[(10 + i, 5) for i in range(20)], *[(30, 5)] * 8)
    verdict = evaluate_partition(samples, RULES)
    assert verdict.status is Status.OK
    assert verdict.stuck_s == pytest.approx(7.0)


def test_stuck_time_counts_from_when_lag_appeared_not_from_the_last_commit() -> None:
    # Idle (lag 0) for a minute with the same offset, then messages arrive: not stopped yet.
    samples = history(*[(50, 0)] * 60, (50, 3), (50, 3), (50, 3))
    verdict = evaluate_partition(samples, RULES)
    assert verdict.status is Status.OK
    assert verdict.stuck_s == pytest.approx(2.0)


def test_nothing_committed_and_lag_is_stuck_too() -> None:
    verdict = evaluate_partition(history(*[(None, 9)] * 12), RULES)
    assert verdict.status is Status.STALLED
    assert "committed offset none" in verdict.reason


# --- REWOUND --------------------------------------------------------------------------------------


def test_offset_moving_back_is_rewound() -> None:
    verdict = evaluate_partition(history((10, 5), (20, 0), (8, 12), (9, 11)), RULES)
    assert verdict.status is Status.REWOUND
    assert "from 20 to 8" in verdict.reason


def test_rewound_even_when_caught_up_again() -> None:
    assert status(history((100, 0), (40, 0))) is Status.REWOUND


def test_rewind_older_than_the_window_is_forgotten() -> None:
    samples = history((100, 0), (40, 60), *[(41 + i, 59 - i) for i in range(15)])
    assert status(samples[:4]) is Status.REWOUND
    assert status(samples) is Status.OK


def test_offset_disappearing_is_not_a_rewind() -> None:
    # Committed -> None (offsets expired/deleted) is not a move backwards.
    assert status(history((100, 0), (None, 0))) is Status.OK


def test_rewind_ranks_over_stopped() -> None:
    samples = history(*[(10, 5)] * 40, (4, 11))
    assert status(samples) is Status.REWOUND


# --- group status and ordering ------------------------------------------------------------------------


def test_codes_are_documented_order() -> None:
    assert [STATUS_CODES[s] for s in Status] == [0, 1, 2, 3, 4]
    assert list(Status) == [Status.OK, Status.LAGGING, Status.STALLED, Status.STOPPED, Status.REWOUND]


def test_worst_status_wins() -> None:
    assert worst([]) is Status.OK
    assert worst([Status.OK, Status.LAGGING, Status.OK]) is Status.LAGGING
    assert worst([Status.STOPPED, Status.STALLED, Status.LAGGING]) is Status.STOPPED
    assert worst([Status.REWOUND, Status.STOPPED]) is Status.REWOUND


def test_rules_reject_non_positive_thresholds() -> None:
    with pytest.raises(ValueError):
        StatusRules(window_s=0, stopped_after_s=5)
    with pytest.raises(ValueError):
        StatusRules(window_s=5, stopped_after_s=-1)


# --- properties -----------------------------------------------------------------------------------

_points = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 1000)), st.integers(0, 1000)), min_size=1, max_size=40
)


@given(_points, st.floats(0.1, 5.0))
def test_order_of_samples_does_not_matter(points: list[tuple[int | None, int]], step: float) -> None:
    samples = history(*points, step=step)
    shuffled = samples[:]
    random.Random(len(samples)).shuffle(shuffled)
    assert evaluate_partition(shuffled, RULES) == evaluate_partition(samples, RULES)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(0, 10_000))
def test_a_consumer_that_commits_every_sample_is_never_stuck_or_rewound(steps: list[int], base: int) -> None:
    offsets = [base + sum(steps[: i + 1]) + i for i in range(len(steps))]  # strictly increasing
    samples = history(*[(off, lag) for off, lag in zip(offsets, steps, strict=True)])
    assert status(samples) in (Status.OK, Status.LAGGING)


@given(_points)
def test_caught_up_without_rewind_is_ok(points: list[tuple[int | None, int]]) -> None:
    committed = sorted(c for c, _ in points if c is not None)
    it = iter(committed)
    monotone = [(None if c is None else next(it), lag) for c, lag in points]
    monotone[-1] = (monotone[-1][0], 0)
    assert status(history(*monotone)) is Status.OK
