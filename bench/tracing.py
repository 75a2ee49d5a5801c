"""What a trace per request costs ``/v1/search``: the API with tracing on against tracing off, same run.

Indexes a real corpus (Debian FAQ + man pages) as bench/query.py does, then starts the API as its
own process alternately with tracing on (spans, the trace record, its publication to a fresh
traces topic) and off (``STREAMRAG_TRACING=false``), in the order on, off, off, on, ... so a drift
of this VM's speed cancels, and times the corpus's questions from one client on a kept-alive
connection in each. Embedded Qdrant is one process per folder, hence one API at a time.

Goal (issue 19): p50 with tracing <= 1.05 x p50 without.

    python -m bench.tracing --docs 300 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.http1 import Connection
from bench.ingest import load_corpus, new_topic
from bench.query import free_port, index_corpus, pct, start_api
from streamrag.config import KafkaSettings


def phase(port: int, questions: list[str]) -> list[float]:
    conn = Connection("127.0.0.1", port)
    headers = {"X-API-Key": "dev-key"}
    out = []
    try:
        for q in questions:
            body = json.dumps({"query": q, "k": 5}).encode()
            t = time.perf_counter()
            status, data = conn.post("/v1/search", body, headers)
            out.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"/v1/search answered {status}: {data[:200]!r}")
    finally:
        conn.close()
    return out


def paired_in_process(
    qdrant: Any, questions: list[str], traces: str, repeats: int
) -> tuple[float, float, float]:
    """Both APIs in this process on one store and one query encoder, a request to each in turn
    (the order alternating): (p50 on, p50 off, median of the paired differences), seconds. The
    same process, the same moment: what the trace itself adds, without the spread between processes."""
    import torch
    from fastapi.testclient import TestClient

    from serving.api.app import build_state, create_app
    from serving.retrieval.search import QueryEncoder
    from serving.settings import ApiSettings

    torch.set_num_threads(1)  # as `streamrag serve --no-pipeline` runs queries
    store = qdrant.store()
    apps, states = {}, {}
    encoder = None
    for tracing in (True, False):
        settings = ApiSettings(qdrant=qdrant, queries_topic=None, tracing=tracing, traces_topic=traces)
        encoder = encoder or QueryEncoder(settings.embedding_model_path, dtype=settings.query_dtype)
        states[tracing] = build_state(settings, store=store, encoder=encoder)
        apps[tracing] = create_app(settings, states[tracing])
    lat: dict[bool, list[float]] = {True: [], False: []}
    headers = {"X-API-Key": "dev-key"}
    with TestClient(apps[True]) as on, TestClient(apps[False]) as off:
        clients = {True: on, False: off}
        for q in questions[:10]:
            for c in clients.values():
                c.post("/v1/search", json={"query": q, "k": 5}, headers=headers)
        for r in range(repeats):
            for i, q in enumerate(questions):
                for tracing in (True, False) if (i + r) % 2 == 0 else (False, True):
                    t = time.perf_counter()
                    resp = clients[tracing].post("/v1/search", json={"query": q, "k": 5}, headers=headers)
                    lat[tracing].append(time.perf_counter() - t)
                    assert resp.status_code == 200, resp.text
    for st in states.values():
        st.owns_store = False
    store.close()
    diffs = [a - b for a, b in zip(lat[True], lat[False], strict=True)]
    return pct(lat[True], 50), pct(lat[False], 50), statistics.median(diffs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--pairs", type=int, default=3, help="rounds; each runs on, no-topic and off once, rotated"
    )
    ap.add_argument(
        "--in-process", type=int, default=3, help="repeats of the paired in-process comparison (0: skip)"
    )
    args = ap.parse_args()

    corpus = load_corpus(None, args.docs)
    qdrant, client, points = index_corpus(corpus, None)
    client.close()
    questions = [q.text for q in corpus.queries][: args.queries]
    traces = new_topic(KafkaSettings().librdkafka(), 4)
    print(
        f"indexed {len(corpus.documents)} documents, {points} chunks; {len(questions)} questions; traces -> {traces}"
    )
    if args.in_process:
        on_s, off_s, diff_s = paired_in_process(qdrant, questions, traces, args.in_process)
        print(
            f"in one process, paired ({args.in_process} x {len(questions)} requests each): p50 on {on_s * 1000:.2f} ms, "
            f"off {off_s * 1000:.2f} ms, ratio {on_s / off_s:.3f}; median paired difference {diff_s * 1000:.3f} ms"
        )
    modes = {
        "on": {"STREAMRAG_TRACING": "true", "STREAMRAG_TRACES_TOPIC": traces},
        "no-topic": {"STREAMRAG_TRACING": "true", "STREAMRAG_TRACES_TOPIC": ""},
        "off": {"STREAMRAG_TRACING": "false", "STREAMRAG_TRACES_TOPIC": traces},
    }
    p50: dict[str, list[float]] = {m: [] for m in modes}
    names = list(modes)
    for i in range(args.pairs):  # each round runs every mode once, in a rotated order
        for mode in names[i % 3 :] + names[: i % 3]:
            port = free_port()
            api, _url = start_api(qdrant, port, free_port(), None, 1, modes[mode])
            try:
                phase(port, questions[:10])  # warm-up
                lat = phase(port, questions)
            finally:
                api.terminate()
                api.wait(30)
            p50[mode].append(pct(lat, 50))
            print(
                f"round {i + 1} tracing {mode:<8}: p50 {pct(lat, 50) * 1000:.2f} ms  p99 {pct(lat, 99) * 1000:.2f} ms"
            )
    if not args.pairs:
        return
    on = [a / b for a, b in zip(p50["on"], p50["off"], strict=True)]
    spans = [a / b for a, b in zip(p50["no-topic"], p50["off"], strict=True)]
    print(
        "p50 over the rounds: "
        + ", ".join(f"{m} {statistics.median(v) * 1000:.2f} ms" for m, v in p50.items())
    )
    print(
        f"# bench/tracing.py {datetime.now(UTC):%Y-%m-%d} {platform.node()} ({os.cpu_count()} cpus): "
        f"p50 on/off per round {', '.join(f'{r:.3f}' for r in on)}; median {statistics.median(on):.3f} (goal <= 1.05); "
        f"spans and record without the topic / off: median {statistics.median(spans):.3f}"
    )


if __name__ == "__main__":
    main()
