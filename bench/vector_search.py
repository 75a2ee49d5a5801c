"""Search latency and recall of the two real engines behind streamrag's storage port, side by side.

For each size: the same points (384-d unit vectors, payloads shaped like streamrag's chunks) go
into Qdrant Edge (in-process) and a Qdrant server (REST, on this machine); each engine's HNSW is
built; then the same tenant-filtered top-10 queries run against both, and against an exact numpy
scan over the same arrays (what streamrag's embedded store did before Qdrant Edge). Recall@10 is
measured against that exact answer. Ratios are printed per run, with the machine.

Data: ``--data synthetic`` is embedding-like (a 24-d Gaussian mixture projected to 384-d, queries
near data points, neighbours at cosine ~0.6-0.9); ``--data FILE.npy`` takes real embeddings.

    python bench/vector_search.py --sizes 10000,100000
    python bench/vector_search.py --sizes 1000000 --engines edge,numpy --ef 64,128
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamrag.store import CollectionSpec, Match, Nearest, Point
from streamrag.store.edge import EdgeStore
from streamrag.store.server import ServerStore

DIM = 384
TENANTS = 4


def synthetic(n: int, queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-like unit vectors: a 24-d mixture of 256 clusters projected to 384-d, plus noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, 24)).astype(np.float32)
    proj = rng.normal(size=(24, DIM)).astype(np.float32)
    x = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        low = centers[rng.integers(0, 256, m)] + 0.35 * rng.normal(size=(m, 24)).astype(np.float32)
        x[start : start + m] = low @ proj + 0.6 * rng.normal(size=(m, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    picks = x[rng.integers(0, n, queries)]
    q = picks + 0.06 * rng.normal(size=picks.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q.astype(np.float32)


def payload(i: int) -> dict[str, Any]:
    return {
        "tenant": f"t{i % TENANTS}",
        "doc_id": f"d{i // 8}",
        "doc_key": f"t{i % TENANTS}/d{i // 8}",
        "version": 1,
        "chunk_index": i % 8,
        "text": f"chunk {i} " + "lorem ipsum dolor sit amet " * 14,
        "source_ts": "2026-12-02T00:00:00+00:00",
    }


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def exact_top(
    x: np.ndarray, tenant_of: np.ndarray, q: np.ndarray, tenant: int, k: int = 10
) -> tuple[np.ndarray, float]:
    """The exact filtered top-k by a numpy scan, and its time (seconds)."""
    t = time.perf_counter()
    scores = x @ q
    scores[tenant_of != tenant] = -2.0
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return top, time.perf_counter() - t


def fill(store: Any, name: str, x: np.ndarray, batch: int) -> float:
    t = time.perf_counter()
    keys = ids(len(x))
    store.ensure_collection(name, CollectionSpec(dense={"dense": DIM}, keyword_indexes=["tenant", "doc_key"]))
    for s in range(0, len(x), batch):
        store.upsert(
            name,
            [Point(keys[i], {"dense": x[i].tolist()}, payload(i)) for i in range(s, min(s + batch, len(x)))],
        )
        if s // batch % 20 == 0:
            print(f"    upserted {min(s + batch, len(x)):,}/{len(x):,}", flush=True)
    return time.perf_counter() - t


def wait_server_indexed(store: ServerStore, name: str, timeout_s: float = 3600) -> float:
    import httpx

    t = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    settled, last = 0, -1
    while time.monotonic() < deadline:
        info = httpx.get(f"{store.location}/collections/{name}", timeout=10).json()["result"]
        # Done when the optimizer is idle (green) and the indexed count has stopped moving: segments
        # below the indexing threshold stay unindexed (searched exactly) by design.
        indexed = int(info.get("indexed_vectors_count") or 0)
        settled = settled + 1 if info["status"] == "green" and indexed == last else 0
        last = indexed
        if settled >= 6:
            return time.perf_counter() - t
        time.sleep(0.5)
    raise TimeoutError("the server did not finish indexing")


def run_queries(
    store: Any,
    name: str,
    q: np.ndarray,
    truth: list[np.ndarray],
    ef: int | None,
    filtered: bool = True,
    exact: bool = False,
    acorn: bool = False,
) -> dict[str, float]:
    keys = ids(max(int(t.max()) for t in truth) + 1)
    lat, recall = [], []
    for j, vec in enumerate(q):
        where = [Match.eq("tenant", f"t{j % TENANTS}")] if filtered else []
        req = Nearest(vec.tolist(), "dense", 10, where, (), ef=ef, exact=exact, acorn=acorn)
        t = time.perf_counter()
        (found,) = store.search(name, [req])
        lat.append(time.perf_counter() - t)
        want = {keys[i] for i in truth[j]}
        recall.append(len(want & {p.id for p in found}) / 10)
    lat.sort()
    return {
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "recall": statistics.fmean(recall),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--engines", default="edge,server,server-grpc,numpy")
    ap.add_argument("--ef", default="default,128", help="HNSW ef values to try ('default': the engine's)")
    ap.add_argument("--data", default="synthetic", help="'synthetic' or an .npy file of unit vectors")
    ap.add_argument("--server-url", default=None, help="a running Qdrant server (default: start one here)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    engines = set(args.engines.split(","))
    efs = [None if e == "default" else int(e) for e in args.ef.split(",")]
    machine = f"{platform.node()} {os.cpu_count()} cores {platform.processor() or platform.machine()}"
    print(f"machine: {machine}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-vbench-"))
    nodes: list[Any] = []
    servers: dict[str, Any] = {}
    lines = []
    try:
        if engines & {"server", "server-grpc"}:
            url = args.server_url
            if not url:
                from stack import qdrant

                nodes = qdrant.start(tmp / "server", 26433, 1, log=print)
                url = nodes[0].url
            servers = {
                "server": ServerStore(url, timeout_s=300),
                "server-grpc": ServerStore(url, timeout_s=300, prefer_grpc=True),
            }
        for n in [int(s) for s in args.sizes.split(",")]:
            if args.data == "synthetic":
                x, q = synthetic(n, args.queries)
            else:
                allx = np.load(args.data).astype(np.float32)
                rng = np.random.default_rng(3)
                x = allx[:n]
                q = allx[rng.integers(0, len(allx), args.queries)] + 0.02 * rng.normal(
                    size=(args.queries, DIM)
                ).astype(np.float32)
                q /= np.linalg.norm(q, axis=1, keepdims=True)
                n = len(x)
            tenant_of = np.arange(n) % TENANTS
            truth, scan = [], []
            for j, vec in enumerate(q):
                top, secs = exact_top(x, tenant_of, vec, j % TENANTS)
                truth.append(top)
                scan.append(secs)
            scan.sort()
            ref = 1000 * scan[len(scan) // 2]
            print(f"== {n:,} points: numpy exact scan p50 {ref:.2f} ms")
            row: dict[str, Any] = {"n": n, "numpy_p50_ms": ref}
            for engine in [
                e for e in ("edge", "server") if e in engines or (e == "server" and "server-grpc" in engines)
            ]:
                name = f"bench{uuid.uuid4().hex[:6]}"
                # The server is filled over gRPC (binary vectors: far less to encode than JSON),
                # then queried over REST and gRPC on the same collection.
                store: Any = (
                    EdgeStore(tmp / f"edge{n}", maintain=False)
                    if engine == "edge"
                    else servers["server-grpc"]
                )
                upsert_s = fill(store, name, x, 2000 if engine == "edge" else 1000)
                t = time.perf_counter()
                if engine == "edge":
                    store.optimize(name)
                    index_s = time.perf_counter() - t
                else:
                    index_s = wait_server_indexed(servers["server"], name)
                print(f"  {engine}: upsert {upsert_s:.1f} s, index {index_s:.1f} s")
                if engine == "edge":
                    info = store._shard(name).info()
                    print(
                        f"  edge shard: {info.segments_count} segments, {info.indexed_vectors_count:,} of {info.points_count:,} indexed"
                    )
                plain = [np.argsort(-(x @ v))[:10] for v in q[:50]]
                probe = store if engine == "edge" else servers["server"]
                r0 = run_queries(probe, name, q[:50], plain, None, filtered=False)
                r1 = run_queries(probe, name, q[:50], truth[:50], None, exact=True)
                print(
                    f"  {engine}: unfiltered recall@10 {r0['recall']:.3f} (p50 {r0['p50_ms']:.2f} ms); filtered exact=True recall {r1['recall']:.3f} (p50 {r1['p50_ms']:.2f} ms)"
                )
                row[f"{engine}_unfiltered_recall"] = r0["recall"]
                row[f"{engine}_upsert_s"], row[f"{engine}_index_s"] = upsert_s, index_s
                clients = (
                    {"edge": store}
                    if engine == "edge"
                    else {e: servers[e] for e in ("server", "server-grpc") if e in engines}
                )
                for label, client in clients.items():
                    run_queries(client, name, q[:20], truth[:20], None)  # warm-up
                    for ef, acorn in [(ef, a) for a in (False, True) for ef in efs]:
                        r = run_queries(client, name, q, truth, ef, acorn=acorn)
                        tag = f"{label}_ef{ef or 'default'}{'_acorn' if acorn else ''}"
                        row.update({f"{tag}_{k}": v for k, v in r.items()})
                        print(
                            f"  {tag}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, recall@10 {r['recall']:.3f}; "
                            f"numpy scan / {label} p50 = {ref / r['p50_ms']:.1f}x",
                            flush=True,
                        )
                if engine == "edge":
                    store.close()
                    shutil.rmtree(tmp / f"edge{n}", ignore_errors=True)
                else:
                    store.drop(name)
            lines.append(row)
    finally:
        for one in servers.values():
            one.close()
        for node in nodes:
            node.managed.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    with args.out.open("a") as f:
        f.write(
            f"\n<!-- vector_search {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, data={args.data} -->\n"
        )
        for row in lines:
            f.write(
                "<!-- "
                + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                + " -->\n"
            )


if __name__ == "__main__":
    main()
