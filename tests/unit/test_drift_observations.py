"""Records -> observations, the DriftEvent built from a positive check, and the settings."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from consumers.drift.app import broker_url
from consumers.drift.evaluate import detect, drift_event
from consumers.drift.observations import InvalidRecord, KeyedObservation, from_feature, from_query
from consumers.drift.settings import DriftOptions, DriftSettings
from consumers.drift.windows import Observation, WindowPair, summarize
from streamrag.config import KafkaSettings
from streamrag.contracts import DriftEvent, FeatureRecord, QueryRecord

TS = datetime(2026, 1, 1, tzinfo=UTC)


def feature(embedding: list[float], tenant: str = "acme", chunk_index: int = 0) -> bytes:
    return FeatureRecord(
        tenant=tenant, doc_id="d1", version=1, chunk_index=chunk_index, model_id="minilm", embedding=embedding,
        source_ts=TS, indexed_ts=TS, source_topic="streamrag.documents", source_partition=0, source_offset=9,
    ).to_bytes()  # fmt: skip


def query(**fields: object) -> bytes:
    base: dict[str, object] = {"request_id": "r1", "tenant": "acme", "endpoint": "answer", "query": "q",
                               "model_id": "minilm", "ts": TS}  # fmt: skip
    return QueryRecord.model_validate({**base, **fields}).to_bytes()


def test_feature_record_gives_one_document_embedding() -> None:
    [item] = from_feature(feature([0.1, 0.2, 0.3]), "features", 2, 41)
    assert (item.tenant, item.kind, item.model_id, item.scope) == ("acme", "document_embedding", "minilm",
                                                                   "document_embedding@minilm")  # fmt: skip
    assert item.observation.source == "features:2" and item.observation.offset == 41
    assert item.observation.ts == TS.timestamp()
    assert item.key == b"acme"
    assert np.allclose(item.observation.value, [0.1, 0.2, 0.3])


def test_only_a_documents_first_chunk_is_observed() -> None:
    # the chunks of one document are not exchangeable observations: one per document version
    assert from_feature(feature([0.1, 0.2, 0.3], chunk_index=1), "features", 2, 42) == []
    assert len(from_feature(feature([0.1, 0.2, 0.3], chunk_index=0), "features", 2, 43)) == 1


def test_answer_query_gives_three_observations_and_search_two() -> None:
    answer = from_query(query(embedding=[0.5, 0.5], top_score=0.7, dont_know=True), "queries", 0, 5)
    assert {i.kind: float(i.observation.value[0]) for i in answer} == pytest.approx(
        {"query_embedding": 0.5, "retrieval_score": 0.7, "dont_know_rate": 1.0}
    )
    search = from_query(query(endpoint="search", embedding=[0.5, 0.5], top_score=0.7), "queries", 0, 6)
    assert [i.kind for i in search] == ["query_embedding", "retrieval_score"]
    assert from_query(query(endpoint="search"), "queries", 0, 7) == []


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"tenant": "acme"}', b"[1, 2]", None])
def test_records_that_do_not_parse_raise_value_error(raw: bytes | None) -> None:
    # None is a tombstone: no value to parse
    with pytest.raises(ValueError):
        from_feature(raw, "features", 0, 0)  # type: ignore[arg-type]


def test_empty_or_non_finite_embeddings_are_invalid() -> None:
    with pytest.raises(InvalidRecord):
        from_feature(feature([]), "features", 0, 0)
    # JSON has no NaN, but the parser accepts the literal other producers may write
    raw = query(embedding=[0.0, 1.0]).replace(b"[0.0,1.0]", b"[NaN,1.0]")
    with pytest.raises(InvalidRecord):
        from_query(raw, "queries", 0, 0)


def test_keyed_observation_round_trips_through_bytes() -> None:
    [item] = from_feature(feature(list(np.linspace(-1, 1, 384))), "features", 1, 3)
    again = KeyedObservation.from_bytes(item.to_bytes())
    assert (again.tenant, again.kind, again.model_id) == (item.tenant, item.kind, item.model_id)
    assert np.array_equal(again.observation.value, item.observation.value)
    with pytest.raises(ValueError):
        KeyedObservation.from_bytes(item.to_bytes().replace(b"document_embedding", b"weather"))


def pair_of(reference: list[float], current: list[float]) -> WindowPair:
    ref = [Observation(np.asarray([v], np.float32), 1.0 + i, "q:0", i) for i, v in enumerate(reference)]
    cur = [Observation(np.asarray([v], np.float32), 100.0 + i, "q:0", 100 + i) for i, v in enumerate(current)]
    return WindowPair(np.stack([o.value for o in ref]), np.stack([o.value for o in cur]), summarize(ref),
                      summarize(cur), {"q:0": 100 + len(current) - 1})  # fmt: skip


def test_scalar_kinds_use_their_thresholds() -> None:
    opts = DriftOptions(score_drop_threshold=0.05, dont_know_rise_threshold=0.1)
    assert detect("retrieval_score", pair_of([0.8] * 10, [0.7] * 10), opts).drift
    assert not detect("retrieval_score", pair_of([0.8] * 10, [0.78] * 10), opts).drift
    assert detect("dont_know_rate", pair_of([0.0] * 10, [1.0] * 3 + [0.0] * 7), opts).drift


def test_drift_event_carries_windows_offsets_and_test_details() -> None:
    pair = pair_of([0.8] * 10, [0.6] * 10)
    result = detect("retrieval_score", pair, DriftOptions())
    event = drift_event("acme", "retrieval_score", "minilm", pair, result)
    parsed = DriftEvent.model_validate_json(event.to_bytes())
    assert parsed == event
    assert parsed.score == pytest.approx(0.2) and parsed.threshold == 0.05
    assert parsed.feature_offsets == {"q:0": 109}
    assert parsed.reference_window["offsets"] == {"q:0": [0, 9]} and parsed.reference_window["size"] == 10
    assert parsed.current_window["model_id"] == "minilm"
    assert parsed.current_window["test"]["current_mean"] == pytest.approx(0.6)


def test_settings_read_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRAG_DRIFT__REFERENCE_SIZE", "77")
    monkeypatch.setenv("STREAMRAG_DRIFT__DRIFT_TOPIC", "custom.drift")
    monkeypatch.setenv("STREAMRAG_KAFKA__BOOTSTRAP_SERVERS", "a:1,b:2")
    settings = DriftSettings()
    assert settings.drift.reference_size == 77 and settings.drift.drift_topic == "custom.drift"
    assert settings.drift.observations_topic() == "streamrag-drift-observations"
    assert broker_url(settings.kafka) == "kafka://a:1;kafka://b:2"
    assert broker_url(KafkaSettings()) == "kafka://127.0.0.1:19092"


def test_settings_reject_an_alpha_the_permutations_cannot_reach() -> None:
    with pytest.raises(ValueError, match="mmd_permutations"):
        DriftOptions(mmd_alpha=0.001, mmd_permutations=500)
    assert DriftOptions(mmd_alpha=0.001, mmd_permutations=999).mmd_permutations == 999
