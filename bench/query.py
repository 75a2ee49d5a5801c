"""Query benchmark: /v1/search latency under concurrent clients vs its stages timed alone, same run.

Indexes a real corpus (Debian FAQ + man pages) through the real pipeline into a fresh embedded
Qdrant, then measures:

* each stage alone over the corpus's own questions: query embedding (dense + sparse), Qdrant
  search (dense + sparse candidates), fusion and dedup;
* ``POST /v1/search`` p50/p99 with ``--clients`` concurrent HTTP clients, against ``streamrag
  serve`` running as its own process (as deployed; clients in the same process as the server
  would take its CPU and GIL), started once the stages are timed (embedded Qdrant is one process);
* ratio = p50(/v1/search) / sum of the stages' p50 (goal <= 1.2);
* ``POST /v1/answer`` time to first token and tokens/s with the embedded local model.

    python bench/query.py --docs 300 --clients 2 --record
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the streamrag CLI sets it (see app/cli.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from bench.http1 import Connection
from bench.ingest import Progress, cpu_seconds, forget, load_corpus, make_events, new_topic
from producers.publisher import Publisher
from serving.api.app import build_state
from serving.llm.launch import start_llm
from serving.retrieval.search import rank, tenant_filter
from serving.settings import ApiSettings
from streamrag.config import QdrantSettings
from streamrag.contracts import IndexSchema as S
from streams.embed import Embedder
from streams.runner import start_in_thread
from streams.settings import PipelineSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads; Linux /proc)."""
    try:
        return cpu_seconds(f"/proc/{pid}/stat")
    except OSError:
        return float("nan")


#: The stages of /v1/search as the API times them (``timings_ms``): query embedding, the Qdrant
#: calls (candidates, then the results' payloads), fusion and dedup, reranking when it is on.
API_STAGES = ("embed_ms", "search_ms", "rank_ms", "rerank_ms")


def index_corpus(corpus: Any, model_path: Path | None) -> tuple[QdrantSettings, Any, int]:
    """Index ``corpus`` through the real pipeline into a fresh embedded Qdrant; (settings, store, points)."""
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-qbench-"))
    qdrant = QdrantSettings(path=tmp / "q", collection="bench")
    base = PipelineSettings(metrics_port=None, features_topic=None, embedding_model_path=model_path)
    topic = new_topic(base.kafka.librdkafka(), 4)
    group = f"qbench-{uuid.uuid4().hex[:8]}"
    with Publisher(base.kafka, topic=topic) as pub:
        pub.publish_many(make_events(corpus.documents, tenant="default"))
    embedder = Embedder(model_path)
    client = qdrant.store()
    running = start_in_thread(
        base.model_copy(
            update={"source_topics": [topic], "cdc_topics": [], "pipeline_group": group, "qdrant": qdrant}
        ),
        store=client,
        embedder=embedder,
    )
    progress = Progress(base.kafka.librdkafka(), group, topic)
    progress.wait(0.2)
    progress.close()
    running.stop()
    forget(base.kafka.librdkafka(), topic, group)
    return qdrant, client, client.count(S.collection_for("bench", base.embedding_model_version))


def start_api(
    qdrant: QdrantSettings,
    api_port: int,
    llm_port: int,
    model_path: Path | None,
    query_threads: int | None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``streamrag serve --no-pipeline --no-llm`` as its own process on the store; waits for /healthz."""
    env = {
        **os.environ,
        "STREAMRAG_QDRANT__PATH": str(qdrant.path),
        "STREAMRAG_QDRANT__COLLECTION": qdrant.collection,
        "STREAMRAG_LLM_PORT": str(llm_port),
        "STREAMRAG_QUERIES_TOPIC": "",
        "STREAMRAG_MAX_NEW_TOKENS": "64",
        "STREAMRAG_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    if model_path:
        env["STREAMRAG_EMBEDDING_MODEL_PATH"] = str(model_path)
    if query_threads:
        env["STREAMRAG_QUERY_TORCH_THREADS"] = str(query_threads)
    api = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--no-pipeline", "--no-llm",
         "--port", str(api_port)],
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return api, url
        except httpx.TransportError:
            pass
        if api.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the API did not start (exit code {api.poll()})")
        time.sleep(0.5)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="concurrent phases, each between two phases of one client (the stages timed alone)",
    )
    ap.add_argument(
        "--answers", type=int, default=3, help="/v1/answer requests timed; 0 skips the generator entirely"
    )
    ap.add_argument("--corpus-dir", type=Path, default=None, help="a saved corpus (Corpus.save_jsonl) to use")
    ap.add_argument(
        "--model-path", type=Path, default=None, help="a sentence-transformers folder (default: packaged)"
    )
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    corpus = load_corpus(args.corpus_dir, args.docs)
    qdrant, client, points = index_corpus(corpus, args.model_path)
    print(f"indexed {len(corpus.documents)} documents, {points} chunks")

    llm_port, api_port = free_port(), free_port()
    llm = start_llm(llm_port) if args.answers else None
    settings = ApiSettings(
        qdrant=qdrant,
        port=api_port,
        llm_port=llm_port,
        queries_topic=None,
        max_new_tokens=64,
        embedding_model_path=args.model_path,
    )
    if settings.query_torch_threads:  # what `streamrag serve --no-pipeline` sets: stages alone use it too
        import torch

        torch.set_num_threads(settings.query_torch_threads)
    print(f"query embedding: {__import__('torch').get_num_threads()} torch thread(s) (query_torch_threads)")
    state = build_state(settings, store=client)
    headers = {"X-API-Key": "dev-key"}
    questions = [q.text for q in corpus.queries][: args.queries]

    # Stages alone.
    enc, ret = state.encoder, state.retriever
    stage: dict[str, list[float]] = {"embed": [], "search": [], "fuse": []}
    k = 5  # as the clients below ask
    for q in questions:
        t0 = time.perf_counter()
        dense, (idx, vals) = enc.encode(q)
        t1 = time.perf_counter()
        flt = tenant_filter("default")  # the API's own calls, stage by stage (Retriever.search)
        d, sp = ret.shortlist(ret.collection, dense, (idx, vals), flt, k, settings.hybrid_weight)
        t2 = time.perf_counter()
        ranked = rank(d, sp, settings.hybrid_weight, settings.fusion)
        t3 = time.perf_counter()
        ret.hits(ret.collection, "default", ranked, k)
        t4 = time.perf_counter()
        stage["embed"].append(t1 - t0)
        stage["search"].append(t2 - t1 + t4 - t3)  # candidates, then the k results' payloads
        stage["fuse"].append(t3 - t2)
    bench_sum = sum(pct(v, 50) for v in stage.values())

    # The API as its own process on the same store (embedded Qdrant: release it here first).
    state.close()
    client.close()
    api, url = start_api(qdrant, api_port, llm_port, args.model_path, settings.query_torch_threads)
    for q in questions[:5]:  # warm-up
        httpx.post(
            f"{url}/v1/search", json={"query": q, "k": 5}, headers=headers, timeout=60
        ).raise_for_status()
    for name, v in stage.items():
        print(
            f"stage {name:<6} alone, in this process: p50 {pct(v, 50) * 1000:7.2f} ms  p99 {pct(v, 99) * 1000:7.2f} ms"
        )
    print(f"   sum {bench_sum * 1000:.2f} ms (for reference; the ratio uses the API's own timings, below)")

    # /v1/search: phases of one client (each stage timed alone, inside the API) and of
    # --clients concurrent clients, alternated: S, C, S, C, ..., S. Each C phase's p50 is divided
    # by the mean stage sum of the two S phases around it, as bench/ingest.py brackets P with E:
    # this VM's CPU speed drifts within minutes, so only side-by-side phases compare.
    def phase(clients: int, qs: list[str]) -> tuple[list[float], dict[str, list[float]], float]:
        """(latencies, the API's own timings by name, wall seconds) of ``qs`` sent by ``clients``."""
        lat: list[float] = []
        server: dict[str, list[float]] = {}
        lock = threading.Lock()

        def worker(part: list[str]) -> None:
            # A lean HTTP/1.1 client on a kept-alive connection (bench/http1.py): what a client
            # spends on itself is in every latency it times (http.client: ~0.23 ms a request on
            # the 16-core machine, httpx three times that).
            conn = Connection("127.0.0.1", api_port)
            try:
                for q in part:
                    body = json.dumps({"query": q, "k": k}).encode()
                    t = time.perf_counter()
                    status, data = conn.post("/v1/search", body, headers)
                    dt = time.perf_counter() - t
                    if status != 200:
                        raise RuntimeError(f"/v1/search answered {status}: {data[:200]!r}")
                    with lock:
                        lat.append(dt)
                        for name, ms in json.loads(data)["timings_ms"].items():
                            server.setdefault(name, []).append(ms / 1000)
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(qs[i::clients],)) for i in range(clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return lat, server, time.perf_counter() - t

    def stage_sum_of(server: dict[str, list[float]]) -> float:
        return sum(pct(server[name], 50) for name in API_STAGES if name in server)

    sums = [stage_sum_of(phase(1, questions)[1])]
    lat: list[float] = []
    inside: dict[str, list[float]] = {}
    ratios: list[float] = []
    busy = wall = client_cpu = 0.0
    for rnd in range(1, args.rounds + 1):
        server0, client0 = process_cpu_s(api.pid), time.process_time()
        lat_r, server, wall_r = phase(args.clients, questions)
        busy += process_cpu_s(api.pid) - server0
        client_cpu += time.process_time() - client0
        wall += wall_r
        lat += lat_r
        for name, v in server.items():
            inside.setdefault(name, []).extend(v)
        sums.append(stage_sum_of(phase(1, questions)[1]))
        ratios.append(pct(lat_r, 50) / ((sums[-2] + sums[-1]) / 2))
        print(
            f"   round {rnd}: {args.clients} clients p50 {pct(lat_r, 50) * 1000:.1f} ms; stages alone (one client, "
            f"timed inside the API) {sums[-2] * 1000:.1f} ms before, {sums[-1] * 1000:.1f} ms after: "
            f"ratio {ratios[-1]:.2f}"
        )
    server_cpu, client_cpu = busy / len(lat), client_cpu / len(lat)
    stage_sum = float(np.median(sums))
    p50, p99 = pct(lat, 50), pct(lat, 99)
    ratio = float(np.median(ratios))
    print(
        f"/v1/search with {args.clients} concurrent clients: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"{len(lat) / wall:.1f} req/s"
    )
    print(
        "  as timed inside the API: "
        + ", ".join(f"{name} p50 {pct(v, 50) * 1000:.1f} ms" for name, v in sorted(inside.items()))
    )
    print(
        f"ratio p50(/v1/search) / sum(stage p50) = {ratio:.2f} (median of {len(ratios)} bracketed rounds: "
        f"{', '.join(f'{x:.2f}' for x in ratios)})   (goal <= 1.2)"
    )
    # What the cores allow: with the clients on the same machine, each request costs the server's
    # CPU and its client's. With c clients always waiting on n cores, a request cannot finish
    # faster than c * (CPU per request) / n, however well the work overlaps.
    cores = os.cpu_count() or 1
    per_request = server_cpu + client_cpu
    floor = max(stage_sum, args.clients * per_request / cores)
    print(
        f"CPU per request: server {server_cpu * 1000:.1f} ms + client {client_cpu * 1000:.1f} ms; "
        f"on {cores} cores {args.clients} clients cannot get p50 below ~{floor * 1000:.1f} ms "
        f"(ratio floor {floor / stage_sum:.2f})"
    )

    # /v1/answer: time to first token and tokens/s.
    ttft, tps = [], []
    for q in questions[: args.answers]:
        t = time.perf_counter()
        first, n = None, 0
        with httpx.stream(
            "POST", f"{url}/v1/answer", json={"query": q, "k": 3}, headers=headers, timeout=300
        ) as r:
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "token":
                    n += 1
                    first = first or time.perf_counter() - t
        total = time.perf_counter() - t
        if first is not None and n > 1:
            ttft.append(first)
            tps.append((n - 1) / (total - first))
    if ttft:
        print(
            f"/v1/answer: time to first token p50 {pct(ttft, 50):.2f} s, {pct(tps, 50):.1f} tokens/s (local model)"
        )
    api.terminate()
    api.wait(30)
    if llm is not None:
        llm.stop()
    if args.record:
        res = {
            "docs": len(corpus.documents),
            "chunks": points,
            "clients": args.clients,
            "search_p50_ms": p50 * 1000,
            "search_p99_ms": p99 * 1000,
            "stage_sum_p50_ms": stage_sum * 1000,
            "ratio": ratio,
            "cpu_ms_per_request": per_request * 1000,
            "ratio_floor": floor / stage_sum,
            "ttft_s": pct(ttft, 50) if ttft else None,
            "tokens_per_s": pct(tps, 50) if tps else None,
        }
        with Path(__file__).with_name("RESULTS.md").open("a") as fh:
            fh.write(
                f"\n- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} cpus), "
                f"bench/query.py: {json.dumps(res)}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
