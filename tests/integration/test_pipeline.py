"""The feature pipeline end to end on the real stack: exact under updates, deletes, bad input and crashes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.publisher import Publisher
from streamrag.contracts import DeadLetter, IndexSchema, Op, Topics
from streams.chunk import Chunker
from streams.clean import clean_text
from streams.kafka_source import part_name
from tests.utils.builders import document_event
from tests.utils.kafka import read_from
from tests.utils.net import free_port
from tests.utils.pipeline import (
    default_chunker,
    expected_points,
    final_states,
    group_progress,
    pipeline_settings,
    start_harness,
    wait_caught_up,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

MODEL_VERSION = "minilm-l6-v2"


@pytest.fixture(scope="session")
def embedder() -> Any:
    from streams.embed import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def chunker(embedder: Any) -> Chunker:
    """The pipeline's own chunker at its defaults (the title is each chunk's header, not in the text)."""
    return default_chunker(embedder)


@pytest.fixture
def topics(topic_factory: Any) -> dict[str, str]:
    return {
        "docs": topic_factory("docs", partitions=2),
        "dlq": topic_factory("dlq", partitions=1),
        "features": topic_factory("features", partitions=1),
    }


def long_body(n_sentences: int, seed: str) -> str:
    words = [
        "kafka",
        "stream",
        "offset",
        "partition",
        "broker",
        "replica",
        "commit",
        "index",
        "vector",
        "chunk",
    ]
    return " ".join(
        f"Sentence {i} about {words[(i * 7 + len(seed)) % 10]} and {words[i % 10]} in {seed}."
        for i in range(n_sentences)
    )


def test_out_of_order_versions_and_delete_fencing(
    stack: Any, embedder: Any, chunker: Any, topics: dict, tmp_path: Path, group_factory: Any
) -> None:
    settings = pipeline_settings(
        [topics["docs"]], group_factory("pipe"), tmp_path / "q", "c", topics["dlq"], topics["features"]
    )
    tenant = f"t{uuid.uuid4().hex[:6]}"
    events = [
        document_event("a", tenant=tenant, version=2, body="Version two of a."),
        document_event("a", tenant=tenant, version=1, body="Version one of a, older, arrives later."),
        document_event("b", tenant=tenant, version=5, body="B at five."),
        document_event("b", tenant=tenant, version=6, op=Op.DELETE),
        document_event("b", tenant=tenant, version=5, body="B at five, replayed after its delete."),
        document_event("b", tenant=tenant, version=6, body="An upsert at the delete's own version."),
    ]
    harness = start_harness(settings, embedder)
    try:
        with Publisher(stack.kafka, topic=topics["docs"]) as pub:
            for ev in events:  # one at a time, so the fence (not in-batch coalescing) decides
                pub.publish(ev)
                time.sleep(0.15)
        harness.wait()
        index = harness.store.chunk_index()
        assert index == expected_points(events, chunker, clean_text, MODEL_VERSION)
        assert {v for v, _ in index.values()} == {2}  # only a@v2; b stays deleted
        assert harness.running.runtime.metrics.fenced._value.get() >= 3
    finally:
        harness.stop()


def test_cdc_insert_update_shorter_delete(
    stack: Any,
    embedder: Any,
    chunker: Any,
    topics: dict,
    tmp_path: Path,
    group_factory: Any,
    kafka_conf: dict,
) -> None:
    group = group_factory("pipe-cdc")
    # Start the group at the CDC topic's current end: only this test's changes matter.
    consumer = Consumer({**kafka_conf, "group.id": group})
    parts = consumer.list_topics(Topics.CDC_DOCUMENTS, timeout=10).topics[Topics.CDC_DOCUMENTS].partitions
    ends = [
        TopicPartition(
            Topics.CDC_DOCUMENTS,
            p,
            consumer.get_watermark_offsets(TopicPartition(Topics.CDC_DOCUMENTS, p), timeout=10)[1],
        )
        for p in parts
    ]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()
    settings = pipeline_settings(
        [Topics.CDC_DOCUMENTS],
        group,
        tmp_path / "q",
        "c",
        topics["dlq"],
        None,
        cdc_topics=[Topics.CDC_DOCUMENTS],
    )
    tenant, doc = f"cdc{uuid.uuid4().hex[:6]}", "manual-1"
    harness = start_harness(settings, embedder)
    store = harness.store

    def doc_chunks() -> dict[str, tuple[int, int]]:
        flt = {IndexSchema.DOC_KEY: f"{tenant}/{doc}"}
        return {k: v for k, v in store.chunk_index().items() if k in _ids_for(store, flt)}

    try:
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as conn:
            v1 = conn.execute(
                "INSERT INTO documents (id, tenant, title, body) VALUES (%s, %s, %s, %s) RETURNING version",
                (doc, tenant, "Manual", long_body(60, "first")),
            ).fetchone()[0]
            harness.wait_for(f"{tenant}/{doc}", v1)
            first = doc_chunks()
            assert len(first) >= 3 and {v for v, _ in first.values()} == {v1}
            v2 = conn.execute(
                "UPDATE documents SET body = %s WHERE tenant = %s AND id = %s RETURNING version",
                ("A short replacement body.", tenant, doc),
            ).fetchone()[0]
            harness.wait_for(f"{tenant}/{doc}", v2)
            second = doc_chunks()
            assert {v for v, _ in second.values()} == {v2}  # no stale chunk of v1 survives
            assert len(second) == len(chunker.chunk("A short replacement body.")) == 1
            conn.execute("DELETE FROM documents WHERE tenant = %s AND id = %s", (tenant, doc))
            deadline = time.monotonic() + 60
            while doc_chunks() and time.monotonic() < deadline:
                time.sleep(0.2)
            top = store.latest([f"{tenant}/{doc}"])[f"{tenant}/{doc}"]
            assert (top.version, top.op) == (v2, Op.DELETE)
            assert doc_chunks() == {}
    finally:
        harness.stop()


def _ids_for(store: Any, match: dict[str, str]) -> set[str]:
    from streamrag.store import Match

    return {
        pid for pid, _ in store.store.scroll(store.collection, [Match.eq(k, v) for k, v in match.items()], ())
    }


def test_malformed_events_are_dead_lettered_and_the_flow_goes_on(
    stack: Any,
    embedder: Any,
    chunker: Any,
    topics: dict,
    tmp_path: Path,
    group_factory: Any,
    producer_factory: Any,
    kafka_conf: dict,
) -> None:
    settings = pipeline_settings(
        [topics["docs"]], group_factory("pipe-dlq"), tmp_path / "q", "c", topics["dlq"], topics["features"]
    )
    tenant = f"t{uuid.uuid4().hex[:6]}"
    good_before = document_event("ok1", tenant=tenant, body="Before the bad ones.")
    good_after = document_event("ok2", tenant=tenant, body="After the bad ones.")
    producer = producer_factory()
    producer.produce(topics["docs"], key=good_before.key.encode(), value=good_before.to_bytes(), partition=0)
    bad = [b"{not json", json.dumps({"tenant": tenant, "doc_id": "x", "op": "upsert"}).encode(), b"\xff\xfe"]
    for value in bad:
        producer.produce(topics["docs"], key=b"junk", value=value, partition=0)
    producer.produce(topics["docs"], key=good_after.key.encode(), value=good_after.to_bytes(), partition=0)
    assert producer.flush(10) == 0
    harness = start_harness(settings, embedder)
    try:
        harness.wait()
        index = harness.store.chunk_index()
        assert index == expected_points([good_before, good_after], chunker, clean_text, MODEL_VERSION)
    finally:
        harness.stop()
    dead = [
        DeadLetter.model_validate_json(m.value())
        for m in read_from(kafka_conf, topics["dlq"], {0: 0}, lambda ms: len(ms) >= 3, timeout_s=20)
    ]
    assert [(d.topic, d.partition, d.offset) for d in dead] == [
        (topics["docs"], 0, 1),
        (topics["docs"], 0, 2),
        (topics["docs"], 0, 3),
    ]
    assert "not valid JSON" in dead[0].reason or "JSON" in dead[0].reason
    assert "version" in dead[1].reason
    assert dead[0].value_b64 is not None
    # Feature records were emitted for the good documents' chunks.
    feats = read_from(kafka_conf, topics["features"], {0: 0}, lambda ms: len(ms) >= len(index), timeout_s=20)
    assert len(feats) == len(index)


def _publish_workload(stack: Any, topic: str, tenant: str, n_docs: int) -> list[Any]:
    """Inserts, updates (longer and shorter) and deletes, shuffled in time but ordered per document."""
    events = []
    for i in range(n_docs):
        doc = f"doc{i:03d}"
        events.append(
            document_event(doc, tenant=tenant, version=1, title=f"Doc {i}", body=long_body(8 + i % 30, doc))
        )
        if i % 3 == 0:
            events.append(
                document_event(doc, tenant=tenant, version=2, title=f"Doc {i}", body=long_body(2, doc))
            )
        if i % 5 == 0:
            events.append(document_event(doc, tenant=tenant, version=3, op=Op.DELETE))
        if i % 7 == 0:
            events.append(
                document_event(
                    doc, tenant=tenant, version=4, title=f"Doc {i} again", body=long_body(40, doc + "x")
                )
            )
    order = sorted(range(len(events)), key=lambda j: (hash((j * 7919) % 101), j))
    per_doc_sorted = sorted(order, key=lambda j: (events[j].doc_id, events[j].version))
    with Publisher(stack.kafka, topic=topic) as pub:
        pub.publish_many([events[j] for j in per_doc_sorted])
    return events


def test_kill_9_mid_stream_then_restart_is_exact(
    stack: Any,
    embedder: Any,
    chunker: Any,
    topics: dict,
    tmp_path: Path,
    group_factory: Any,
    kafka_conf: dict,
) -> None:
    group = group_factory("pipe-kill")
    tenant = f"t{uuid.uuid4().hex[:6]}"
    events = _publish_workload(stack, topics["docs"], tenant, n_docs=60)
    env = {
        **os.environ,
        "STREAMRAG_SOURCE_TOPICS": json.dumps([topics["docs"]]),
        "STREAMRAG_CDC_TOPICS": "[]",
        "STREAMRAG_GROUP_ID": group,
        "STREAMRAG_QDRANT__PATH": str(tmp_path / "q"),
        "STREAMRAG_QDRANT__COLLECTION": "c",
        "STREAMRAG_DEAD_LETTER_TOPIC": topics["dlq"],
        "STREAMRAG_FEATURES_TOPIC": topics["features"],
        "STREAMRAG_MAX_BATCH_MESSAGES": "8",
        "STREAMRAG_MAX_WAIT_S": "0.05",
    }
    cmd = [sys.executable, "-m", "streamrag", "pipeline", "run", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done, end = group_progress(kafka_conf, group, [topics["docs"]])
            if done > 0:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: some batches committed, others in flight
        proc.wait(10)
        done, end = group_progress(kafka_conf, group, [topics["docs"]])
        assert 0 < done < end, (done, end)
    finally:
        if proc.poll() is None:
            proc.kill()
    restarted = subprocess.Popen(
        [*cmd, "--until-idle", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_caught_up(kafka_conf, group, [topics["docs"]], timeout_s=300)
        _, err = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, err.decode()[-3000:]
    finally:
        if restarted.poll() is None:
            restarted.kill()
    from streamrag.config import QdrantSettings
    from streams.index_store import IndexStore

    with QdrantSettings(path=tmp_path / "q").store() as edge:
        store = IndexStore(edge, "c", MODEL_VERSION, embedder.dim, "m")
        assert store.chunk_index() == expected_points(events, chunker, clean_text, MODEL_VERSION)


def test_two_workers_give_the_same_index_as_one(
    stack: Any, embedder: Any, topic_factory: Any, topics: dict, tmp_path: Path, group_factory: Any
) -> None:
    docs_topic = topic_factory("docs4", partitions=4)
    tenant = f"t{uuid.uuid4().hex[:6]}"
    _publish_workload(stack, docs_topic, tenant, n_docs=24)
    results = []
    for workers in (1, 2):
        settings = pipeline_settings(
            [docs_topic],
            group_factory(f"pipe-w{workers}"),
            tmp_path / f"q{workers}",
            "c",
            topics["dlq"],
            None,
            workers=workers,
        )
        harness = start_harness(settings, embedder)
        try:
            harness.wait(timeout_s=240)
            results.append(harness.store.chunk_index())
        finally:
            harness.stop()
    assert results[0] and results[0] == results[1]


def test_small_documents_overtake_a_large_one_and_offsets_are_committed_in_order(
    stack: Any,
    embedder: Any,
    chunker: Any,
    topic_factory: Any,
    topics: dict,
    tmp_path: Path,
    group_factory: Any,
) -> None:
    """One partition, one document per batch, the smallest embedding slice: the small documents behind
    a large one are searchable before it (streams.schedule), the committed offset never passes the
    large one before it is written, and the index is exact, including a small document updated
    while the large one is still being embedded."""
    topic = topic_factory("docs1", partitions=1)
    group = group_factory("pipe-overtake")
    settings = pipeline_settings(
        [topic], group, tmp_path / "q", "c", topics["dlq"], None, max_batch_messages=1, embed_slice_chunks=2
    )
    tenant = f"t{uuid.uuid4().hex[:6]}"
    big = document_event("big", tenant=tenant, body=long_body(720, "big"))
    small = [
        document_event(f"s{i}", tenant=tenant, body=f"Small document {i} about brokers.") for i in range(4)
    ]
    update = document_event("s0", tenant=tenant, version=2, body="Small document zero, second version.")
    events = [big, *small, update]
    # a turn reads one message and embeds two chunks: the large document takes 20 turns or more
    assert len(chunker.chunk(clean_text(big.body))) >= 40
    harness = start_harness(settings, embedder)
    conf = settings.kafka.librdkafka()
    try:
        with Publisher(stack.kafka, topic=topic) as pub:
            offsets = [pub.publish(ev).offset for ev in events]
        big_offset = offsets[0]
        deadline = time.monotonic() + 120
        while True:
            done, end = group_progress(conf, group, [topic])
            if done > big_offset:  # the commit covers the large document: it must be written by now
                assert big.key in harness.store.latest([big.key]), "offset committed before its write"
            if done == end:
                break
            assert time.monotonic() < deadline, f"not caught up: committed {done} of {end}"
            time.sleep(0.02)
        index = harness.store.chunk_index()
        assert index == expected_points(events, chunker, clean_text, MODEL_VERSION)
        registered = harness.store.latest([ev.key for ev in events])
        assert registered[update.key].version == 2
        big_at = registered[big.key].indexed_ts
        assert all(registered[ev.key].indexed_ts < big_at for ev in small[1:]), "no small document overtook"
    finally:
        harness.stop()


def test_two_processes_through_one_qdrant_server_are_exact_across_kill_9_of_one(
    stack: Any,
    embedder: Any,
    chunker: Any,
    topic_factory: Any,
    topics: dict,
    tmp_path: Path,
    group_factory: Any,
    kafka_conf: dict,
    qdrant_server: Any,
) -> None:
    """A two-process Bytewax cluster writing to a real Qdrant server: one process is killed
    mid-stream, the other stops, both are restarted, and the index is exact."""
    docs_topic = topic_factory("docs4", partitions=4)
    group = group_factory("pipe-2proc")
    tenant = f"t{uuid.uuid4().hex[:6]}"
    events = _publish_workload(stack, docs_topic, tenant, n_docs=48)
    url = qdrant_server.url
    collection = f"c{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "STREAMRAG_SOURCE_TOPICS": json.dumps([docs_topic]),
        "STREAMRAG_CDC_TOPICS": "[]",
        "STREAMRAG_GROUP_ID": group,
        "STREAMRAG_QDRANT_URL": url,
        "STREAMRAG_QDRANT__COLLECTION": collection,
        "STREAMRAG_DEAD_LETTER_TOPIC": topics["dlq"],
        "STREAMRAG_FEATURES_TOPIC": topics["features"],
        "STREAMRAG_MAX_BATCH_MESSAGES": "4",
        "STREAMRAG_MAX_WAIT_S": "0.05",
    }

    def cluster(run: str, *extra: str) -> list[subprocess.Popen[bytes]]:
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
        cmd = [sys.executable, "-m", "streamrag", "pipeline", "run", "--metrics-port", "0", "-a", addresses]
        # Logs to files: a pipe nobody reads until the end would fill up and block the process.
        return [
            subprocess.Popen(
                [*cmd, "-i", str(i), *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{run}{i}.log").open("wb"),
            )
            for i in range(2)
        ]

    def log(run: str, i: int) -> str:
        return (tmp_path / f"{run}{i}.log").read_text()[-3000:]

    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = cluster("first")
        deadline = time.monotonic() + 180
        while group_progress(kafka_conf, group, [docs_topic])[0] == 0:
            for i, p in enumerate(procs):
                assert p.poll() is None, log("first", i)
            assert time.monotonic() < deadline, "no batch was committed"
            time.sleep(0.2)
        # One process dies mid-stream: its peer fails fast (its cluster is gone) instead of
        # hanging, so a supervisor restarts both; some batches are committed, others were in flight.
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        assert procs[1].wait(60) != 0, log("first", 1)
        done, end = group_progress(kafka_conf, group, [docs_topic])
        assert 0 < done < end, (done, end)

        procs = cluster("restart", "--until-idle", "4")
        try:
            wait_caught_up(kafka_conf, group, [docs_topic], timeout_s=300)
        except AssertionError as exc:  # say what the processes were doing
            exits = [p.poll() for p in procs]
            raise AssertionError(
                f"{exc}; exit codes {exits}\n{log('restart', 0)}\n---\n{log('restart', 1)}"
            ) from exc
        read: list[set[str]] = []
        for i, p in enumerate(procs):
            assert p.wait(120) == 0, log("restart", i)
            read.append(
                set(re.findall(r"reading (\S+) from offset", (tmp_path / f"restart{i}.log").read_text()))
            )
        # The cluster split the partitions between the processes: each was read once, by one of them.
        assert read[0] | read[1] == {part_name(docs_topic, p) for p in range(4)}, read
        assert not read[0] & read[1], read

        from streamrag.config import QdrantSettings
        from streams.index_store import IndexStore

        server_store = QdrantSettings(url=url).store()
        store = IndexStore(server_store, collection, MODEL_VERSION, embedder.dim, "m")
        assert store.chunk_index() == expected_points(events, chunker, clean_text, MODEL_VERSION)

        # The API's retrieval reads the same index through the same kind of client: a live
        # document's first chunk finds that document, at its latest version.
        from serving.retrieval.search import QueryEncoder, Retriever

        final = final_states(events)
        target = final[min(key for key, ev in final.items() if ev.op is not Op.DELETE)]
        first_chunk = chunker.chunk(clean_text(target.body))[0].text
        hits = (
            Retriever(server_store, collection, QueryEncoder(), candidates=50)
            .search(first_chunk, tenant, k=3)
            .hits
        )
        assert hits and (hits[0].doc_id, hits[0].version) == (target.doc_id, target.version), hits[:3]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
