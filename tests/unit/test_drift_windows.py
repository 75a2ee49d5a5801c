"""Window life cycle, cooldown, de-duplication and serialisable state (pure logic, dict store)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from consumers.drift.detectors import mmd_permutation_test
from consumers.drift.windows import (
    DriftWindows,
    Observation,
    WindowConfig,
    decode_vector,
    encode_vector,
    summarize,
)

SOURCE = "features:0"


def obs(offset: int, value: Any = 0.0, source: str = SOURCE) -> Observation:
    vector = np.atleast_1d(np.asarray(value, dtype=np.float32))
    return Observation(vector, ts=1_767_225_600.0 + offset, source=source, offset=offset)


def feed(windows: DriftWindows, values: list[Any], start: int = 0) -> list[int]:
    """Add values at consecutive offsets; return the offsets at which an evaluation was due."""
    return [start + i for i, v in enumerate(values) if windows.add(obs(start + i, v)) is not None]


def test_vectors_round_trip_exactly_as_compact_base64() -> None:
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    encoded = encode_vector(vector)
    assert np.array_equal(decode_vector(encoded), vector)
    assert len(encoded) == 4 * ((384 * 4 + 2) // 3)


def test_reference_fills_first_then_evaluations_every_n_once_current_is_full() -> None:
    store: dict[str, Any] = {}
    windows = DriftWindows(store, "acme", "k@m", WindowConfig(10, 5, 3, 0))
    due = feed(windows, list(range(30)))
    # reference: offsets 0-9; current full at offset 14; then every 3rd observation
    assert due == [14, 17, 20, 23, 26, 29]
    pair = windows.pair()
    assert pair.reference[:, 0].tolist() == list(range(10))
    assert sorted(pair.current[:, 0].tolist()) == [25, 26, 27, 28, 29]
    assert pair.feature_offsets == {SOURCE: 29}
    assert pair.current_summary["offsets"] == {SOURCE: [25, 29]}
    assert pair.current_summary["size"] == 5 and pair.current_summary["span_s"] == 4.0


def test_duplicates_are_ignored_per_source_partition() -> None:
    store: dict[str, Any] = {}
    windows = DriftWindows(store, "acme", "k@m", WindowConfig(3, 2, 1, 0))
    for offset in (0, 1, 1, 0, 2):
        windows.add(obs(offset, offset))
    windows.add(obs(0, 100.0, source="features:1"))  # another partition: not a duplicate
    meta = windows.meta
    assert meta["ref_n"] == 3 and meta["cur_n"] == 1
    assert meta["offsets"] == {SOURCE: 2, "features:1": 0}


def test_reset_after_drift_refills_the_reference_and_honours_the_cooldown() -> None:
    store: dict[str, Any] = {}
    windows = DriftWindows(store, "acme", "k@m", WindowConfig(4, 4, 1, cooldown_items=12))
    assert feed(windows, [0.0] * 8) == [7]
    windows.reset_after_drift()
    # reference refills from offsets 8-11 and the current window is full at 15, but the cooldown
    # holds evaluations back until 12 observations have passed since the event (offset 19)
    due = feed(windows, [1.0] * 16, start=8)
    assert due == [19, 20, 21, 22, 23]
    assert windows.pair().reference[:, 0].tolist() == [1.0] * 4
    assert windows.meta["events"] == 1


def test_state_is_json_and_survives_a_restart() -> None:
    rng = np.random.default_rng(1)
    config = WindowConfig(6, 4, 2, 0)
    store: dict[str, Any] = {}
    first = DriftWindows(store, "acme", "document_embedding@m", config)
    values = [rng.normal(size=384).astype(np.float32) for _ in range(20)]
    feed(first, values[:8])

    restored_store = json.loads(json.dumps(store))  # what a changelog replay gives back
    restored = DriftWindows(restored_store, "acme", "document_embedding@m", config)
    assert feed(restored, values[8:], start=8) == feed(first, values[8:], start=8)
    a, b = first.pair(), restored.pair()
    assert np.array_equal(a.reference, b.reference) and np.array_equal(a.current, b.current)
    assert a.feature_offsets == b.feature_offsets == {SOURCE: 19}
    # one observation is one small record, not a copy of the window
    assert max(len(json.dumps(v)) for v in store.values()) < 2_200
    assert len(store) == 1 + 6 + 4


def test_tenants_and_scopes_do_not_share_state() -> None:
    store: dict[str, Any] = {}
    config = WindowConfig(2, 2, 1, 0)
    a = DriftWindows(store, "a/b", "k@m", config)
    b = DriftWindows(store, "a", "b/k@m", config)  # would collide without quoting
    feed(a, [1.0, 2.0])
    assert b.meta["ref_n"] == 0
    assert a.meta["ref_n"] == 2


def test_window_config_rejects_degenerate_sizes() -> None:
    with pytest.raises(ValueError):
        WindowConfig(1, 5, 1, 0)
    with pytest.raises(ValueError):
        WindowConfig(5, 5, 0, 0)


def test_summary_of_an_empty_window() -> None:
    assert summarize([]) == {"size": 0, "first_ts": None, "last_ts": None, "span_s": 0.0, "offsets": {}}


def run_stream(values: np.ndarray, config: WindowConfig) -> list[int]:
    """Windows + MMD test as the app wires them; the offsets at which drift fired."""
    windows = DriftWindows({}, "acme", "document_embedding@m", config)
    fired = []
    for offset, value in enumerate(values):
        pair = windows.add(obs(offset, value))
        if pair is not None and mmd_permutation_test(pair.reference, pair.current, n_permutations=999,
                                                     alpha=0.001, min_statistic=0.01).drift:  # fmt: skip
            fired.append(offset)
            windows.reset_after_drift()
    return fired


def test_one_shift_gives_one_event_and_a_stable_stream_none() -> None:
    rng = np.random.default_rng(3)
    config = WindowConfig(reference_size=60, window_size=60, evaluate_every=5, cooldown_items=60)
    before, after = rng.normal(size=(100, 8)), rng.normal(size=(260, 8)) + 1.0
    fired = run_stream(np.vstack([before, after]), config)
    assert len(fired) == 1, fired
    assert 100 < fired[0] < 160  # detected within the first window of the new regime
    assert run_stream(rng.normal(size=(360, 8)), config) == []
