"""The pipeline moves forward as an orchestrator sees it: a run killed every few seconds still
commits what it wrote, and ``--until-idle`` exits as caught up only at lag 0 on every partition,
also when the backlog's tail is all fenced (not newer than the index) events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import Publisher
from streamrag.config import QdrantSettings
from streamrag.contracts import Op
from streams.index_store import IndexStore
from tests.utils.builders import document_event
from tests.utils.pipeline import group_progress

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _env(topics: dict[str, str], group: str, path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAMRAG_SOURCE_TOPICS": json.dumps([topics["docs"]]),
        "STREAMRAG_CDC_TOPICS": "[]",
        "STREAMRAG_GROUP_ID": group,
        "STREAMRAG_QDRANT__PATH": str(path),
        "STREAMRAG_QDRANT__COLLECTION": "c",
        "STREAMRAG_DEAD_LETTER_TOPIC": topics["dlq"],
        "STREAMRAG_FEATURES_TOPIC": topics["features"],
        "STREAMRAG_MAX_WAIT_S": "0.05",
        **extra,
    }


CMD = [sys.executable, "-m", "streamrag", "pipeline", "run", "--metrics-port", "0"]


@pytest.fixture
def topics(topic_factory: Any) -> dict[str, str]:
    return {
        "docs": topic_factory("docs", partitions=1),  # batches in publish order: some are deletes only
        "dlq": topic_factory("dlq", partitions=1),
        "features": topic_factory("features", partitions=1),
    }


def _written(path: Path) -> int:
    """Documents with a registry entry in the embedded store (what the killed runs wrote)."""
    from streamrag.contracts import IndexSchema as S

    with QdrantSettings(path=path).store() as store:
        registry = S.collection_for("c", "minilm-l6-v2") + S.REGISTRY_SUFFIX
        return store.count(registry) if store.exists(registry) else 0


def test_a_run_killed_again_and_again_commits_what_it_wrote(
    stack: Any, topics: dict[str, str], group_factory: Any, kafka_conf: dict, tmp_path: Path
) -> None:
    group, tenant = group_factory("pipe-loop"), f"t{uuid.uuid4().hex[:6]}"
    body = " ".join(f"Sentence {i} of a document long enough to take a few chunks." for i in range(30))
    events = []
    for i in range(0, 120, 4):  # four upserts, then a batch of four deletes (no chunks to embed)
        events += [
            document_event(f"d{j}", tenant=tenant, version=1, body=f"{j}: {body}") for j in range(i, i + 4)
        ]
        events += [document_event(f"x{j}", tenant=tenant, version=1, op=Op.DELETE) for j in range(i, i + 4)]
    with Publisher(stack.kafka, topic=topics["docs"]) as pub:
        pub.publish_many(events)
    env = _env(topics, group, tmp_path / "q", STREAMRAG_MAX_BATCH_MESSAGES="4")
    runs: list[tuple[int, int]] = []
    for run in range(3):
        before_written, before_done = (
            _written(tmp_path / "q"),
            group_progress(kafka_conf, group, [topics["docs"]])[0],
        )
        log = (tmp_path / f"run{run}.log").open("wb")
        proc = subprocess.Popen(CMD, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            # Killed once it has written some documents (an orchestrator's kill lands at any time).
            deadline = time.monotonic() + 240
            while True:
                done = group_progress(kafka_conf, group, [topics["docs"]])[0]
                if done >= before_done + 10 or done == len(events):
                    break
                assert proc.poll() is None, (tmp_path / f"run{run}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the run committed nothing in 240 s"
                time.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        written = _written(tmp_path / "q") - before_written
        committed = group_progress(kafka_conf, group, [topics["docs"]])[0] - before_done
        runs.append((written, committed))
        if group_progress(kafka_conf, group, [topics["docs"]])[0] == len(events):
            break
    for written, committed in runs:
        # Each document is its own event here: what a run wrote and did not commit is redone by
        # the next. At least half of what each run wrote before its kill must be committed.
        assert committed >= written / 2, runs


def test_until_idle_exits_caught_up_when_the_backlog_ends_in_fenced_events(
    stack: Any, topic_factory: Any, group_factory: Any, kafka_conf: dict, tmp_path: Path
) -> None:
    topics = {
        "docs": topic_factory("docs", partitions=1),
        "dlq": topic_factory("dlq", partitions=1),
        "features": topic_factory("features", partitions=1),
    }
    group, tenant = group_factory("pipe-fenced"), f"t{uuid.uuid4().hex[:6]}"
    env = _env(topics, group, tmp_path / "q", STREAMRAG_MAX_BATCH_MESSAGES="2")
    with Publisher(stack.kafka, topic=topics["docs"]) as pub:
        pub.publish_many(
            [document_event(f"d{i}", tenant=tenant, version=3, body=f"Third {i}.") for i in range(6)]
        )
    first = subprocess.run([*CMD, "--until-idle", "2"], env=env, capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    # The backlog: two new documents, then a tail of replays older than the index (all fenced).
    with Publisher(stack.kafka, topic=topics["docs"]) as pub:
        pub.publish_many(
            [document_event(f"n{i}", tenant=tenant, version=1, body=f"New {i}.") for i in range(2)]
            + [
                document_event(f"d{i}", tenant=tenant, version=v, body="old")
                for v in (1, 2)
                for i in range(6)
            ]
        )
    second = subprocess.run([*CMD, "--until-idle", "2"], env=env, capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    done, end = group_progress(kafka_conf, group, [topics["docs"]])
    assert (done, end) == (20, 20), second.stderr.decode()[-3000:]
    with QdrantSettings(path=tmp_path / "q").store() as store:
        index = IndexStore(store, "c", "minilm-l6-v2", 384, "m")
        latest = index.latest([f"{tenant}/d{i}" for i in range(6)] + [f"{tenant}/n{i}" for i in range(2)])
    assert sorted(e.version for e in latest.values()) == [1, 1, 3, 3, 3, 3, 3, 3]
