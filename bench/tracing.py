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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--pairs", type=int, default=3, help="rounds; each runs on, no-topic and off once, rotated"
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
