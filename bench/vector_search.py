"""Search latency and recall of the two real engines behind streamrag's storage port, side by side.

For each size: the same points (384-d unit vectors, payloads shaped like streamrag's chunks) go
into Qdrant Edge (in-process) and a Qdrant server (on this machine); each engine's HNSW is built;
then the same tenant-filtered top-10 queries run against both, and against an exact numpy scan
over the same arrays (what streamrag's embedded store did before Qdrant Edge). Recall@10 is
measured against that exact answer. Ratios are printed per run, with the machine.

Engines (``--engines``):

* ``edge``: one Edge shard holding every tenant, searched with the tenant filter (streamrag's layout);
* ``edge-tenant``: one Edge shard per tenant, searched without a filter (the layout to compare);
* ``server``: a Qdrant server over REST (streamrag's ServerStore); ``server-grpc``: the same
  collection over gRPC (ServerStore's requests through a qdrant-client made with ``prefer_grpc``).
  The server is filled the way a bulk load should be: over gRPC from ``--upload-workers``
  processes, with HNSW indexing off during the upload and on after it; the bench then waits until
  the optimizer is idle and the indexed count has stopped moving;
* ``numpy``: the exact scan's own latency (it is the reference either way).

Data: ``--data synthetic`` is embedding-like (a 24-d Gaussian mixture projected to 384-d, queries
near data points, neighbours at cosine ~0.6-0.9; tenant = point index mod 4); ``--data FILE.npy``
takes unit vectors (queries: data points moved by noise); ``--data FILE.npz`` takes real
embeddings with their queries and tenant labels, as ``bench/real_chunks.py`` writes them (then
both of its labels are filtered on: ``tenant``, by source, and ``owner``, by document hash).

    python bench/vector_search.py --sizes 10000,100000
    python bench/vector_search.py --sizes 1000000 --engines server,server-grpc --ef default,128
    python bench/vector_search.py --data real.npz --sizes 0 --engines edge,edge-tenant,server
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from streamrag.store import CollectionSpec, Match, Nearest, Point
from streamrag.store.edge import EdgeStore
from streamrag.store.server import ServerStore

DIM = 384
TENANTS = 4
SPEC = CollectionSpec(dense={"dense": DIM}, keyword_indexes=["tenant", "owner", "doc_key"])


@dataclass
class Data:
    """Points, queries, and for each filter key a label per point and the label each query asks for."""

    x: np.ndarray
    q: np.ndarray
    labels: dict[str, np.ndarray]
    q_labels: dict[str, np.ndarray]


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


def load(source: str, n: int, queries: int) -> Data:
    """``n`` points (0: all of a file) and ``queries`` queries of ``source`` (see the module docstring)."""
    if source == "synthetic":
        x, q = synthetic(n, queries)
        return Data(x, q, {"tenant": np.arange(n) % TENANTS}, {"tenant": np.arange(queries) % TENANTS})
    rng = np.random.default_rng(3)
    if source.endswith(".npz"):
        f = np.load(source)
        keep = rng.permutation(len(f["vectors"]))[: n or None]  # a seeded sample, every tenant in it
        return Data(
            f["vectors"][keep].astype(np.float32),
            f["queries"][:queries].astype(np.float32),
            {k: f[k][keep].astype(np.int64) for k in ("tenant", "owner")},
            {k: f[f"q_{k}"][:queries].astype(np.int64) for k in ("tenant", "owner")},
        )
    allx = np.load(source).astype(np.float32)
    x = allx[: n or None]
    q = allx[rng.integers(0, len(allx), queries)] + 0.02 * rng.normal(size=(queries, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Data(x, q, {"tenant": np.arange(len(x)) % TENANTS}, {"tenant": np.arange(queries) % TENANTS})


def payload(i: int, labels: dict[str, np.ndarray]) -> dict[str, Any]:
    tenant = f"t{labels['tenant'][i]}"
    return {
        "tenant": tenant,
        "owner": f"t{labels['owner'][i]}" if "owner" in labels else tenant,
        "doc_id": f"d{i // 8}",
        "doc_key": f"{tenant}/d{i // 8}",
        "version": 1,
        "chunk_index": i % 8,
        "text": f"chunk {i} " + "lorem ipsum dolor sit amet " * 14,
        "source_ts": "2026-12-02T00:00:00+00:00",
    }


def point_id(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def exact_top(
    x: np.ndarray, q: np.ndarray, label: np.ndarray | None, want: np.ndarray | None, k: int = 10
) -> np.ndarray:
    """The exact top-k rows of ``x`` for each query (rows whose ``label`` is the query's ``want``)."""
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), 32):
        scores = x @ q[s : s + 32].T  # (n, <=32)
        if label is not None and want is not None:
            scores[label[:, None] != want[None, s : s + 32]] = -2.0
        top = np.argpartition(-scores, k, axis=0)[:k].T
        for j, row in enumerate(top):
            out[s + j] = row[np.argsort(-scores[row, j])]
    return out


def scan_p50_ms(x: np.ndarray, q: np.ndarray, label: np.ndarray, want: np.ndarray, k: int = 10) -> float:
    """The numpy exact scan's p50 for one filtered query at a time (what the old store did)."""
    lat = []
    for vec, w in zip(q[:50], want[:50], strict=False):
        t = time.perf_counter()
        scores = x @ vec
        scores[label != w] = -2.0
        top = np.argpartition(-scores, k)[:k]
        top[np.argsort(-scores[top])]
        lat.append(time.perf_counter() - t)
    return 1000 * statistics.median(lat)


def fill_edge(store: EdgeStore, name: str, data: Data, rows: np.ndarray, batch: int = 2000) -> float:
    t = time.perf_counter()
    store.ensure_collection(name, SPEC)
    for s in range(0, len(rows), batch):
        store.upsert(
            name,
            [
                Point(point_id(i), {"dense": data.x[i].tolist()}, payload(i, data.labels))
                for i in rows[s : s + batch]
            ],
        )
        if s // batch % 100 == 0:
            print(f"    upserted {min(s + batch, len(rows)):,}/{len(rows):,}", flush=True)
    return time.perf_counter() - t


# The server's bulk upload: forked workers read the points from here (inherited, not pickled).
_UPLOAD: dict[str, Any] = {}


def _upload_span(span: tuple[int, int]) -> int:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    url, grpc_port, name, data, batch = (_UPLOAD[k] for k in ("url", "grpc_port", "name", "data", "batch"))
    client = QdrantClient(
        url=url, prefer_grpc=True, grpc_port=grpc_port, timeout=600, check_compatibility=False
    )
    try:
        for s in range(span[0], span[1], batch):
            points = [
                qm.PointStruct(
                    id=point_id(i), vector={"dense": data.x[i].tolist()}, payload=payload(i, data.labels)
                )
                for i in range(s, min(s + batch, span[1]))
            ]
            client.upsert(name, points=points, wait=True)
    finally:
        client.close()
    return span[1] - span[0]


def grpc_port(url: str) -> int:
    """Qdrant's convention: gRPC on the HTTP port + 1 (6333 -> 6334)."""
    return (urlparse(url).port or 6333) + 1


def grpc_client(url: str) -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(
        url=url, prefer_grpc=True, grpc_port=grpc_port(url), timeout=300, check_compatibility=False
    )


def fill_server(store: ServerStore, name: str, data: Data, workers: int, batch: int) -> float:
    """Bulk-load ``data`` over gRPC with HNSW indexing off; turn indexing back on. Returns seconds."""
    from qdrant_client import models as qm

    t = time.perf_counter()
    store.ensure_collection(name, SPEC)
    admin = store.client
    threshold = admin.get_collection(name).config.optimizer_config.indexing_threshold or 10_000  # KB
    admin.update_collection(name, optimizers_config=qm.OptimizersConfigDiff(indexing_threshold=0))
    n = len(data.x)
    _UPLOAD.update(url=store.location, grpc_port=grpc_port(store.location), name=name, data=data, batch=batch)
    step = max(batch, -(-n // (workers * 8)))
    spans = [(s, min(s + step, n)) for s in range(0, n, step)]
    done = 0
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for part in pool.imap_unordered(_upload_span, spans):
            done += part
            if done * 10 // n != (done - part) * 10 // n:
                print(f"    uploaded {done:,}/{n:,} ({time.perf_counter() - t:.0f} s)", flush=True)
    _UPLOAD.clear()
    admin.update_collection(name, optimizers_config=qm.OptimizersConfigDiff(indexing_threshold=threshold))
    print(f"    upload done; HNSW indexing back on (indexing_threshold {threshold} KB)", flush=True)
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
            print(
                f"  server collection: {info['segments_count']} segments, {indexed:,} of "
                f"{info['points_count']:,} vectors indexed",
                flush=True,
            )
            return time.perf_counter() - t
        time.sleep(0.5)
    raise TimeoutError("the server did not finish indexing")


def run_queries(
    store: Any,
    names: Sequence[str],
    q: np.ndarray,
    truth: np.ndarray,
    wheres: Sequence[list[Match]],
    ef: int | None,
    exact: bool = False,
    acorn: bool = False,
) -> dict[str, float]:
    """Query ``j`` searches collection ``names[j]`` with filter ``wheres[j]``; p50, p99 and recall@10."""
    lat, recall = [], []
    for j, vec in enumerate(q):
        req = Nearest(vec.tolist(), "dense", 10, wheres[j], (), ef=ef, exact=exact, acorn=acorn)
        t = time.perf_counter()
        (found,) = store.search(names[j], [req])
        lat.append(time.perf_counter() - t)
        want = {point_id(int(i)) for i in truth[j]}
        recall.append(len(want & {p.id for p in found}) / 10)
    lat.sort()
    return {
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "recall": statistics.fmean(recall),
    }


def measure(
    label: str,
    client: Any,
    names: Sequence[str],
    data: Data,
    truths: dict[str, np.ndarray],
    efs: Sequence[int | None],
    keys: Sequence[str],
    row: dict[str, Any],
    ref_ms: float,
    filtered: bool = True,
) -> None:
    """Every (filter key, ef, ACORN) variant of the queries against one client; prints and records."""
    m = len(data.q)
    for key in keys:
        wheres = [[Match.eq(key, f"t{data.q_labels[key][j]}")] if filtered else [] for j in range(m)]
        run_queries(client, names[:20], data.q[:20], truths[key][:20], wheres[:20], None)  # warm-up
        for ef, acorn in [(ef, a) for a in ((False, True) if filtered else (False,)) for ef in efs]:
            r = run_queries(client, names, data.q, truths[key], wheres, ef, acorn=acorn)
            tag = f"{label}_{key}_ef{ef or 'default'}{'_acorn' if acorn else ''}"
            row.update({f"{tag}_{k}": v for k, v in r.items()})
            print(
                f"  {tag}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, recall@10 {r['recall']:.3f}; "
                f"numpy scan / {label} p50 = {ref_ms / r['p50_ms']:.1f}x",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="points per run (0: all of a data file)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--engines", default="edge,server,server-grpc,numpy")
    ap.add_argument("--ef", default="default,128", help="HNSW ef values to try ('default': the engine's)")
    ap.add_argument("--data", default="synthetic", help="'synthetic', an .npy of unit vectors or an .npz")
    ap.add_argument("--server-url", default=None, help="a running Qdrant server (default: start one here)")
    ap.add_argument("--upload-workers", type=int, default=8, help="processes uploading to the server")
    ap.add_argument("--upload-batch", type=int, default=500, help="points per upload request")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    engines = set(args.engines.split(","))
    efs = [None if e == "default" else int(e) for e in args.ef.split(",")]
    machine = f"{platform.node()} {os.cpu_count()} cores {platform.processor() or platform.machine()}"
    print(f"machine: {machine}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; data {args.data}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-vbench-"))
    nodes: list[Any] = []
    rest: ServerStore | None = None
    over_grpc: ServerStore | None = None
    lines = []
    try:
        if engines & {"server", "server-grpc"}:
            url = args.server_url
            if not url:
                from stack import qdrant

                nodes = qdrant.start(tmp / "server", 26433, 1, log=print)
                url = nodes[0].url
            rest = ServerStore(url, timeout_s=300)
            print(f"  server: Qdrant {rest.check_version()} at {url}", flush=True)
            # ServerStore(prefer_grpc=True) still talks REST (its client is made without the flag),
            # so the gRPC variant swaps in a gRPC client under the same adapter code.
            over_grpc = ServerStore(url, timeout_s=300)
            over_grpc.client.close()
            over_grpc.client = grpc_client(url)
        for size in [int(s) for s in args.sizes.split(",")]:
            t = time.perf_counter()
            data = load(args.data, size, args.queries)
            n, m = len(data.x), len(data.q)
            keys = list(data.labels)
            truths = {k: exact_top(data.x, data.q, data.labels[k], data.q_labels[k]) for k in keys}
            plain = exact_top(data.x, data.q, None, None)
            ref = scan_p50_ms(data.x, data.q, data.labels["tenant"], data.q_labels["tenant"])
            shares = ", ".join(
                f"{k}: " + "/".join(f"{c / n:.2f}" for c in np.bincount(data.labels[k])) for k in keys
            )
            print(
                f"== {n:,} points, {m} queries (made in {time.perf_counter() - t:.0f} s; tenant shares {shares}): "
                f"numpy exact scan p50 {ref:.2f} ms",
                flush=True,
            )
            row: dict[str, Any] = {"n": n, "numpy_p50_ms": ref}
            order = [
                e
                for e in ("server", "edge", "edge-tenant")
                if e in engines or (e == "server" and "server-grpc" in engines)
            ]
            for engine in order:
                name = f"bench{uuid.uuid4().hex[:6]}"
                if engine == "server":
                    assert rest is not None and over_grpc is not None
                    upsert_s = fill_server(rest, name, data, args.upload_workers, args.upload_batch)
                    print(
                        f"  server: uploaded in {upsert_s:.1f} s (gRPC, {args.upload_workers} processes)",
                        flush=True,
                    )
                    index_s = wait_server_indexed(rest, name)
                    names = [name] * m
                    probe: Any = rest
                elif engine == "edge":
                    probe = EdgeStore(tmp / f"edge{n}", maintain=False)
                    upsert_s = fill_edge(probe, name, data, np.arange(n))
                    t = time.perf_counter()
                    probe.optimize(name)
                    index_s = time.perf_counter() - t
                    info = probe._shard(name).info()
                    print(
                        f"  edge shard: {info.segments_count} segments, {info.indexed_vectors_count:,} of {info.points_count:,} indexed"
                    )
                    names = [name] * m
                else:  # one shard per tenant, searched unfiltered
                    probe = EdgeStore(tmp / f"edge-tenant{n}", maintain=False)
                    tenants = data.labels["tenant"]
                    upsert_s = index_s = 0.0
                    for v in np.unique(tenants):
                        upsert_s += fill_edge(probe, f"{name}t{v}", data, np.flatnonzero(tenants == v))
                        t = time.perf_counter()
                        probe.optimize(f"{name}t{v}")
                        index_s += time.perf_counter() - t
                    names = [f"{name}t{v}" for v in data.q_labels["tenant"]]
                print(f"  {engine}: upsert {upsert_s:.1f} s, index {index_s:.1f} s", flush=True)
                row[f"{engine}_upsert_s"], row[f"{engine}_index_s"] = upsert_s, index_s
                if engine == "edge-tenant":
                    measure(engine, probe, names, data, truths, efs, ["tenant"], row, ref, filtered=False)
                else:
                    r0 = run_queries(probe, names, data.q, plain, [[]] * m, None)
                    r1 = run_queries(
                        probe,
                        names[:50],
                        data.q[:50],
                        truths["tenant"][:50],
                        [[Match.eq("tenant", f"t{w}")] for w in data.q_labels["tenant"][:50]],
                        None,
                        exact=True,
                    )
                    print(
                        f"  {engine}: unfiltered recall@10 {r0['recall']:.3f} (p50 {r0['p50_ms']:.2f} ms, "
                        f"p99 {r0['p99_ms']:.2f}); filtered exact=True recall {r1['recall']:.3f} "
                        f"(p50 {r1['p50_ms']:.2f} ms)",
                        flush=True,
                    )
                    row[f"{engine}_unfiltered_recall"], row[f"{engine}_unfiltered_p50_ms"] = (
                        r0["recall"],
                        r0["p50_ms"],
                    )
                    clients: dict[str, Any] = {engine: probe}
                    if engine == "server":
                        clients = {
                            e: c for e, c in (("server", rest), ("server-grpc", over_grpc)) if e in engines
                        }
                    for label, client in clients.items():
                        measure(label, client, names, data, truths, efs, keys, row, ref)
                if engine == "server":
                    probe.drop(name)
                else:
                    probe.close()
                    shutil.rmtree(probe.root, ignore_errors=True)
            lines.append(row)
    finally:
        for one in (rest, over_grpc):
            if one is not None:
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
                    + ", ".join(
                        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                    )
                    + " -->\n"
                )


if __name__ == "__main__":
    main()
