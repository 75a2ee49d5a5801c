"""The all-in-one local mode: API, feature pipeline and LLM server in one process.

The embedded Qdrant (Qdrant Edge) store is owned by one process, so on a laptop the
API hosts the pipeline in a thread with the same client. With a Qdrant server
(``STREAMRAG_QDRANT_URL``) every pipeline runs as its own process instead (docker-compose).
This module composes the pipelines; none of them imports it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("streamrag.app")


@dataclass
class Embedded:
    """What the all-in-one mode started, so it can be stopped in reverse order."""

    pipeline: Any = None
    servers: list[Any] = field(default_factory=list)
    """uvicorn servers in threads of this process."""
    processes: list[Any] = field(default_factory=list)
    """Child processes (:class:`streamrag.process.Managed`), e.g. the LLM server."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def stop(self) -> None:
        self.stop_event.set()
        for server in reversed(self.servers):
            server.should_exit = True
        for proc in reversed(self.processes):
            proc.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        for thread in self.threads:
            thread.join(30)


def start_pipeline(store: Any, embedder: Any = None) -> Any:
    from streams.runner import start_in_thread
    from streams.settings import PipelineSettings

    return start_in_thread(PipelineSettings(), store=store, embedder=embedder)


def start_training(embedded: Embedded, store: Any) -> None:
    """The training side of the FTI loop in this process (embedded Qdrant is single-process):
    the drift-event consumer that trains and registers, and the watcher that re-indexes on
    promotion. With a Qdrant server run them as their own processes (`streamrag train consume`,
    `streamrag index watch`)."""
    from training.promotion import PromotionWatcher
    from training.settings import TrainingSettings
    from training.trigger import DriftTrainingConsumer

    settings = TrainingSettings()
    for name, worker in (
        ("streamrag-training", DriftTrainingConsumer(settings, store)),
        ("streamrag-reindex", PromotionWatcher(settings, store)),
    ):
        thread = threading.Thread(
            target=worker.run, kwargs={"stop": embedded.stop_event}, name=name, daemon=True
        )
        thread.start()
        embedded.threads.append(thread)


def serve_in_thread(
    app: Any, host: str, port: int, name: str, ready_path: str = "/health", timeout_s: float = 180.0
) -> Any:
    """Run a uvicorn server in a daemon thread and wait until ``ready_path`` answers 200."""
    import uvicorn

    from streamrag.process import answers_200, wait_until

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, name=name, daemon=True).start()
    wait_until(
        lambda: answers_200(f"http://{host}:{port}{ready_path}"), f"{name} on {host}:{port}", timeout_s
    )
    return server


DEMO_QUESTION_DOC = "debian-faq/basic-defs#whatisdebian"


def demo(n_docs: int = 40, question: str | None = None, echo: Any = print) -> int:
    """The main job on the embedded defaults, end to end; returns a process exit code.

    Real Debian FAQ sections are written as rows of the PostgreSQL ``documents`` table; Debezium
    turns them into CDC events; the pipeline (in this process) indexes them into embedded Qdrant;
    the API answers a question with the local LLM, streaming tokens; then an UPDATE and a DELETE
    show the index following the database exactly.
    """
    import json as _json
    from urllib.parse import quote

    import httpx
    import psycopg

    from serving.api.app import build_state, create_app
    from serving.eval.corpus import build_corpus
    from serving.llm.launch import start_llm
    from serving.settings import ApiSettings
    from stack.manager import up
    from stack.settings import StackSettings

    stack = StackSettings()
    echo("== 1/5 stack: Kafka, PostgreSQL, Kafka Connect + Debezium")
    up(stack, log=lambda m: echo("   " + m))
    corpus = build_corpus(max_docs=None, sources=("debian-faq",))
    docs = corpus.documents[:n_docs]
    echo(
        f"== 2/5 writing {len(docs)} Debian FAQ sections as rows of PostgreSQL `documents` (tenant 'default')"
    )
    with psycopg.connect(stack.postgres.dsn(), autocommit=True) as conn:
        for d in docs:
            conn.execute(
                "INSERT INTO documents (id, tenant, title, body, metadata) VALUES (%s, 'default', %s, %s, %s::jsonb) "
                "ON CONFLICT (tenant, id) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body",
                (d.doc_id.replace("/", ":"), d.title, d.body, _json.dumps({"source": d.source})),
            )
    settings = ApiSettings()
    echo("== 3/5 starting the generator, the feature pipeline and the API in this process")
    embedded = Embedded()
    try:
        if settings.tgi_url is None:
            embedded.processes.append(start_llm(settings.llm_port))
        client = settings.qdrant.store()
        embedded.pipeline = start_pipeline(client)
        state = build_state(settings, store=client)
        embedded.servers.append(
            serve_in_thread(
                create_app(settings, state),
                settings.host,
                settings.port,
                "streamrag-api",
                ready_path="/healthz",
            )
        )
        base = f"http://{settings.host}:{settings.port}"
        headers = {"X-API-Key": next(iter(settings.api_keys))}
        echo("== 4/5 waiting until the pipeline has indexed every CDC event (committed offsets = log end)")
        _wait_indexed(stack, echo)
        queries = [q for q in corpus.queries if q.relevant_doc_ids[0] in {d.doc_id for d in docs}]
        # The FAQ's own first question, a user's first question too; else the first written section's.
        queries.sort(key=lambda q: q.relevant_doc_ids[0] != DEMO_QUESTION_DOC)
        q = question or (queries[0].text if queries else "What is Debian?")
        echo(f"== 5/5 asking: {q}")
        if question is None and queries:
            echo(f"   expected source: {queries[0].relevant_doc_ids[0].replace('/', ':')}")
        echo("   answer: ", end="")
        with httpx.stream(
            "POST",
            f"{base}/v1/answer",
            json={"query": q, "k": 4},
            headers=headers,
            timeout=600,
        ) as resp:
            resp.raise_for_status()
            event = ""
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = _json.loads(line[6:])
                    if event == "token":
                        echo(data["text"], end="")
                    elif event == "citations":
                        echo("")
                        for c in data["citations"]:
                            echo(
                                f"   [{c['n']}] {c['doc_id']} v{c['version']} chunk {c['chunk_index']}: {c['title']}"
                            )
                    elif event == "done":
                        echo(f"   timings (ms): {data['timings_ms']}")
        target = docs[0].doc_id.replace("/", ":")
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "UPDATE documents SET body = %s WHERE tenant = 'default' AND id = %s RETURNING version",
                ("Updated by the demo.", target),
            ).fetchone()
            assert row is not None, "the demo row disappeared"
            new_version = row[0]
        state_url = f"{base}/v1/documents/{quote(target, safe='')}"

        def show_once_indexed(label: str, deleted: bool) -> None:
            # Read-your-writes: the API answers once the index holds this version (or its delete).
            # Waiting for committed offsets to reach the log end would race Debezium: the change
            # may not be in Kafka yet.
            fresh = {"doc_id": target, "min_version": new_version, "deleted": deleted, "timeout_s": 30}
            httpx.post(
                f"{base}/v1/search",
                json={"query": "Updated by the demo", "k": 1, "freshness": fresh},
                headers=headers,
                timeout=60,
            ).raise_for_status()
            echo(f"   after {label}: {httpx.get(state_url, headers=headers, timeout=30).json()}")

        show_once_indexed("UPDATE", deleted=False)
        with psycopg.connect(stack.postgres.dsn(), autocommit=True) as conn:
            conn.execute("DELETE FROM documents WHERE tenant = 'default' AND id = %s", (target,))
        show_once_indexed("DELETE", deleted=True)
        echo(f'demo done. Try: streamrag serve, then streamrag ask "{q}"; lag: streamrag lag')
        return 0
    finally:
        embedded.stop()


def _wait_indexed(stack: Any, echo: Any, timeout_s: float = 900.0) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from streamrag.contracts import Groups, Topics

    consumer = Consumer(
        {**stack.kafka.librdkafka(), "group.id": Groups.PIPELINE, "enable.auto.commit": False}
    )
    try:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            parts = []
            for topic in Topics.SOURCES:
                md = consumer.list_topics(topic, timeout=10).topics[topic]
                parts += [TopicPartition(topic, p) for p in md.partitions]
            committed = consumer.committed(parts, timeout=10)
            done = sum(max(tp.offset, 0) for tp in committed)
            end = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
            line = f"   indexed {done}/{end} source events"
            if line != last:
                echo(line)
                last = line
            if done >= end:
                return
            time.sleep(1)
        raise RuntimeError("the pipeline did not catch up in time")
    finally:
        consumer.close()
