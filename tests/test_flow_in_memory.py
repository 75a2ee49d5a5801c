"""The whole feature dataflow in memory with ``bytewax.testing``: no Kafka, the real model and a real
Qdrant Edge store. Input batches come from a ``TestingSource``, the batches that reach the commit
step go to a ``TestingSink``, and dead letters to an in-memory topic; the same events go through
Kafka end to end in tests/integration/test_pipeline.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from streamrag.config import QdrantSettings
from streamrag.contracts import DeadLetter, DocumentEvent, Op
from streams.clean import clean_text
from streams.flow import Runtime, build_flow
from streams.kafka_source import RawBatch, RawMessage
from streams.settings import PipelineSettings
from tests.utils.builders import document_event
from tests.utils.pipeline import expected_points

TOPIC = "mem.docs"


class MemoryTopic:
    """Where the flow's dead letters go in memory: what its Kafka writer would have sent."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    def write(self, records: Sequence[tuple[bytes | None, bytes]], timeout_s: float = 30.0) -> int:
        self.records.extend(records)
        return len(records)

    def close(self) -> None:
        pass


def message(partition: int, offset: int, value: bytes | None, key: bytes | None = b"k") -> RawMessage:
    return RawMessage(TOPIC, partition, offset, key, value, 1_700_000_000_000 + offset)


def event_message(partition: int, offset: int, ev: DocumentEvent) -> RawMessage:
    return message(partition, offset, ev.to_bytes(), ev.key.encode())


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = PipelineSettings(
        qdrant=QdrantSettings(path=tmp_path / "q", collection="mem"),
        source_topics=[TOPIC],
        cdc_topics=[],
        features_topic=None,
        metrics_port=None,
    )
    rt = Runtime.create(settings)
    rt.dead_letters = MemoryTopic()  # type: ignore[assignment]
    try:
        yield rt
    finally:
        if rt.model_threads is not None:
            rt.model_threads.shutdown(wait=True)
        rt.store.store.close()


def run(rt: Runtime, batches: list[RawBatch]) -> list[Any]:
    out: list[Any] = []
    run_main(build_flow(rt.settings, rt, source=TestingSource(batches), sink=TestingSink(out)))
    return out


def test_the_whole_flow_indexes_exactly_and_dead_letters_bad_input(runtime: Runtime) -> None:
    a1 = document_event("a", version=1, body="The ferry leaves every forty minutes. " * 90)
    a2 = document_event("a", version=2, body="The ferry leaves hourly.")  # an update to a shorter body
    b1 = document_event("b", version=1, body="Buses take bicycles on a front rack.")
    b_old = document_event("b", version=0, body="An older version, delivered late.")
    c1 = document_event("c", version=3, body="A document deleted below.")
    c_del = document_event("c", version=3, op=Op.DELETE, title="", body="")
    batches = [
        RawBatch(
            TOPIC, 0, (event_message(0, 0, a1), message(0, 1, b"{not json"), event_message(0, 2, b1)), seq=0
        ),
        RawBatch(TOPIC, 1, (event_message(1, 0, c1),), seq=0),
        RawBatch(TOPIC, 0, (event_message(0, 3, a2), event_message(0, 4, b_old)), seq=1),
        RawBatch(TOPIC, 1, (event_message(1, 1, c_del),), seq=1),
    ]
    out = run(runtime, batches)

    # Every batch reached the commit step, each partition's in order.
    done = [(w.partition, w.seq, w.next_offset) for w in out]
    assert sorted(done) == [(0, 0, 3), (0, 1, 5), (1, 0, 1), (1, 1, 2)]
    for p in (0, 1):
        assert [seq for part, seq, _ in done if part == p] == [0, 1]
    # The malformed message is a dead letter with its coordinates and reason; nothing else is.
    [(key, value)] = runtime.dead_letters.records  # type: ignore[attr-defined]
    dead = DeadLetter.model_validate_json(value)
    assert (dead.topic, dead.partition, dead.offset) == (TOPIC, 0, 1)
    assert dead.reason and base64.b64decode(dead.value_b64 or "") == b"{not json"
    assert key == f"{TOPIC}:0:1".encode() and dead.key == "k"  # keyed by its coordinates
    # The index holds exactly the latest version of each live document: a2's chunks only (a1's longer
    # chunk set gone), b1 (the late v0 fenced), no c (deleted).
    chunker = runtime.chunker
    assert len(chunker.chunk(clean_text(a1.body))) >= 2  # so the update really leaves chunks behind
    want = expected_points([a1, a2, b1, b_old, c1, c_del], chunker, clean_text, runtime.store.model_version)
    assert runtime.store.chunk_index() == want
    # The late v0 did not replace v1 (fenced at the fence step or at the write, whichever saw v1 first).
    assert runtime.store.latest([b1.key])[b1.key].version == 1
    assert json.loads(value)["pipeline"]


def test_every_chunk_point_carries_the_whole_payload_contract(runtime: Runtime) -> None:
    from streamrag.contracts import ChunkPayload

    ev = document_event(
        "p", version=4, title="Ferries", body="The ferry leaves hourly. " * 120, metadata={"k": 1}
    )
    run(runtime, [RawBatch(TOPIC, 0, (event_message(0, 0, ev),), seq=0)])
    store = runtime.store
    payloads = [pl for _, pl in store.store.scroll(store.collection)]
    assert len(payloads) >= 2
    for pl in payloads:
        assert set(pl) == set(ChunkPayload.model_fields)  # the writer writes every field, nothing else
        c = ChunkPayload.model_validate(pl)
        assert (c.tenant, c.doc_id, c.doc_key, c.version, c.title, c.metadata) == (
            ev.tenant,
            "p",
            ev.key,
            4,
            "Ferries",
            {"k": 1},
        )
        assert c.source_topic == TOPIC and c.source_offset == 0 and c.parent_text is not None
    assert sorted(ChunkPayload.model_validate(pl).chunk_index for pl in payloads) == list(
        range(len(payloads))
    )
