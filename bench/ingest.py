"""Ingest benchmark: pipeline throughput P vs raw embedder throughput E, measured side by side.

On one corpus of real documents (Debian FAQ sections and man pages), in one run:

* E: the embedder alone encoding every chunk of the corpus (same model, dtype and batch size);
* P: the whole pipeline, Kafka in to acknowledged in Qdrant and offsets committed, same chunks,
  timed from the first event read (as E is timed on a warm model; the start-up before it is
  printed beside), with the cores the model, the rest of the process and the broker used;
* E' and E'': the embedder on the chunker's token ids, whole and in the pipeline's slices, once each
  (what slicing costs, apart from the pipeline's own work);
* freshness p50/p99 (source timestamp to searchable) at an offered load of half of P;
* bf16 vs fp32: encode speed-up and cosine agreement on the same chunks.

E and P alternate, and each P is divided by the mean of the E before and after it; the CPU
steal of each round is printed, because a shared VM's speed drifts within minutes. Prints the
ratios; ``--record`` appends a dated entry to bench/RESULTS.md. Needs the local stack
(``make stack-up``). Not a test: nothing here asserts, it measures.

    python bench/ingest.py --docs 300 --repeat 5 --record
"""

from __future__ import annotations

import argparse
import os
import platform
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

import numpy as np
from confluent_kafka.admin import AdminClient, NewTopic

from producers.publisher import Publisher
from serving.eval.corpus import build_corpus
from serving.eval.schema import Corpus
from streamrag.config import QdrantSettings
from streamrag.contracts import DocumentEvent, Op, utcnow
from streams.chunk import Chunker, ChunkingConfig
from streams.clean import clean_text
from streams.embed import Embedder
from streams.runner import start_in_thread
from streams.settings import PipelineSettings
from streams.steps import document_text

#: the Qdrant server P writes to (``--qdrant-url``); None: the embedded store in a fresh folder
QDRANT_URL: str | None = None


def bench_qdrant(tmp: Path) -> QdrantSettings:
    """A fresh collection for one P round: on the server, or in a new embedded folder."""
    if QDRANT_URL:
        return QdrantSettings(url=QDRANT_URL, collection=f"bench{uuid.uuid4().hex[:8]}")
    return QdrantSettings(path=tmp / f"q{uuid.uuid4().hex[:6]}", collection="bench")


def cpu_times() -> list[int]:
    """The machine's cumulative CPU times in jiffies (/proc/stat: user ... steal); [] elsewhere."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return []


def steal_share(before: list[int], after: list[int]) -> str:
    """The share of CPU time the hypervisor took between two :func:`cpu_times` (a shared VM's
    noise: a round with steal measures the neighbours too)."""
    if not before or not after:
        return "n/a"
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return f"{delta[7] / max(sum(delta), 1):.1%}"


def cpu_seconds(stat_path: str) -> float:
    """User + system CPU seconds of a process or thread so far, from its /proc ``stat`` file (a
    process's include its finished threads'). Raises OSError where there is no such file."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """Cores used between :meth:`start` and :meth:`stop` (Linux /proc; empty elsewhere), by: the
    embedder's model streams (its pool threads), the rest of this process (the pipeline's own work),
    and the Kafka broker and Connect JVMs. P/E follows the model's share: on 2 cores the pipeline's
    own work and the broker run on the cores the model has to itself in E."""

    def start(self) -> CpuShare:
        self._at, self._t = self._sample(), time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        end, wall = self._sample(), time.perf_counter() - self._t
        return {k: (end[k] - self._at.get(k, 0.0)) / wall for k in end} if end and wall > 0 else {}

    @staticmethod
    def _sample() -> dict[str, float]:
        try:
            model = 0.0
            for thread in threading.enumerate():
                if thread.name.startswith("streamrag-embed") and thread.native_id is not None:
                    model += cpu_seconds(f"/proc/self/task/{thread.native_id}/stat")
            jvm = 0.0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        if f.read().strip() == "java":
                            jvm += cpu_seconds(f"/proc/{pid}/stat")
                except OSError:
                    continue
            return {
                "model": model,
                "rest of the process": cpu_seconds("/proc/self/stat") - model,
                "broker JVMs": jvm,
            }
        except OSError:
            return {}


def shares(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {c:.2f}" for name, c in cores.items()) + " cores" if cores else "n/a"


def percentile(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def make_events(docs: list, tenant: str, version: int = 1) -> list[DocumentEvent]:
    return [
        DocumentEvent(
            tenant=tenant,
            doc_id=d.doc_id.replace("/", ":"),
            version=version,
            op=Op.UPSERT,
            title=d.title,
            body=d.body,
            source_ts=utcnow(),
        )
        for d in docs
    ]


def chunks_per_event(events: list[DocumentEvent], chunker: Chunker) -> list[list[Any]]:
    """Each event's chunks, cleaned and chunked as the pipeline does."""
    texts = [document_text(clean_text(ev.title), clean_text(ev.body)) for ev in events]
    return chunker.chunk_many(texts)


def new_topic(conf: dict, partitions: int) -> str:
    name = f"bench.docs.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)  # keep a reference: the futures die with the client
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def forget(conf: dict, topic: str, group: str) -> None:
    """Delete a bench's topic and consumer group (best effort): left behind, they pile up on the
    broker, and every lag monitor samples each group."""
    admin = AdminClient(conf)
    futures = [*admin.delete_consumer_groups([group], request_timeout=30).values()]
    futures += admin.delete_topics([topic], operation_timeout=30).values()
    for fut in futures:
        try:
            fut.result(30)
        except Exception as exc:  # cleanup only: say so and go on
            print(f"(could not delete bench leftovers: {exc})")


class Progress:
    """(committed, log-end) offsets of a group on a topic, read with one long-lived consumer.

    The bench polls it every 0.1 s while the pipeline runs; a consumer per poll would take CPU
    (and broker work) from the pipeline it measures.
    """

    def __init__(self, conf: dict, group: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
        md = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._parts = [TopicPartition(topic, p) for p in md.partitions]

    def committed(self) -> int:
        """The group's committed offsets summed; 0 while the group coordinator is still loading
        (a fresh broker answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS for a while)."""
        from confluent_kafka import KafkaError, KafkaException

        loading = {
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
        }
        try:
            parts = self._consumer.committed(self._parts, timeout=10)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and (error.code() in loading or error.retriable()):
                return 0
            raise
        return sum(max(tp.offset, 0) for tp in parts)

    def log_end(self) -> int:
        return sum(
            self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self._parts
        )

    def wait(self, poll_s: float = 0.1) -> None:
        """Until the group has committed every message published so far (the log end is read once:
        one request a poll, not one per partition more, keeps the broker's share of the cores small)."""
        end = self.log_end()
        while self.committed() < end:
            time.sleep(poll_s)

    def close(self) -> None:
        self._consumer.close()


def load_corpus(corpus_dir: Path | None, docs: int) -> Corpus:
    """The benches' corpus: ``docs`` documents of a saved one (``Corpus.save_jsonl``, for machines
    without this one's man pages), or built from this machine's Debian FAQ and man pages."""
    if corpus_dir:
        return Corpus.load_jsonl(corpus_dir).head(docs)
    return build_corpus(max_docs=docs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300, help="documents from the corpus (default 300)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--freshness-seconds", type=float, default=30.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="the pipeline's embedder dtype"
    )
    ap.add_argument(
        "--no-kafka",
        action="store_true",
        help="P through the same dataflow from memory (no broker: for machines without Java)",
    )
    ap.add_argument(
        "--model-path", type=Path, default=None, help="a sentence-transformers folder (default: packaged)"
    )
    ap.add_argument("--corpus-dir", type=Path, default=None, help="a saved corpus (Corpus.save_jsonl) to use")
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="bracketed E/P rounds; the median is reported (single rounds on a shared VM range +-15%%)",
    )
    ap.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    ap.add_argument(
        "--qdrant-url", default=None, help="write to this Qdrant server (default: the embedded Qdrant Edge)"
    )
    args = ap.parse_args()
    global QDRANT_URL
    QDRANT_URL = args.qdrant_url

    settings = PipelineSettings(
        embed_batch_size=args.batch_size,
        metrics_port=None,
        workers=args.workers,
        embedding_device=args.device,
        embedding_model_path=args.model_path,
    )
    corpus = load_corpus(args.corpus_dir, args.docs)
    embedder = Embedder(
        args.model_path,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    chunker = Chunker(
        embedder.tokenizer,
        ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap, settings.parent_tokens),
        embedder.max_tokens,
    )
    events = make_events(corpus.documents, tenant="bench")
    per_event = chunks_per_event(events, chunker)
    chunks = [c for event_chunks in per_event for c in event_chunks]
    texts = [c.text for c in chunks]
    chunk_counts = [len(event_chunks) for event_chunks in per_event]
    print(
        f"corpus: {len(events)} documents, {len(texts)} chunks, {sum(map(len, texts)):,} chars; "
        f"machine: {platform.node()} {os.cpu_count()} cpus; model streams {embedder.streams} x {__import__('torch').get_num_threads()} torch thread(s)"
    )

    embedder.encode(texts[:64])  # warm-up

    def raw_throughput(label: str) -> float:
        cpu = CpuShare().start()
        t = time.perf_counter()
        embedder.encode(texts)
        e_s = time.perf_counter() - t
        print(
            f"E  raw embedder ({embedder.dtype}, {label}): {len(texts) / e_s:8.1f} chunks/s  ({e_s:.1f} s; "
            f"{shares(cpu.stop())})"
        )
        return len(texts) / e_s

    # E and P alternate (E, P, E, P, ..., E) and each P is divided by the mean of the two E around
    # it: on a shared VM the CPU's speed drifts within minutes, and bracketing keeps each ratio a
    # side-by-side measurement. The median over --repeat rounds is the figure.
    results: dict[str, float | int] = {"docs": len(events), "chunks": len(texts), "rounds": args.repeat}
    e_runs = [raw_throughput("round 1, before")]
    mark = cpu_times()
    ratios: list[float] = []
    p_runs: list[float] = []
    for r in range(1, args.repeat + 1):
        if args.no_kafka:
            p_s, written = run_from_memory(settings, embedder, events)
            P = written / p_s
            print(f"P  pipeline (from memory, no broker), round {r}: {P:8.1f} chunks/s  ({p_s:.1f} s)")
        else:
            last = r == args.repeat
            P, fresh = run_through_kafka(settings, embedder, events, chunk_counts, args, freshness=last)
            print(f"P  pipeline (Kafka in to Qdrant, offsets committed), round {r}: {P:8.1f} chunks/s")
            if fresh:
                p50, p99, rate_docs, n = fresh
                print(
                    f"freshness at {P / 2:.1f} chunks/s (half of P; {rate_docs:.2f} docs/s) over {n} docs: p50 {p50:.2f} s, "
                    f"p99 {p99:.2f} s   (goal p99 <= 2 s)"
                )
                results |= {"offered_docs_per_s": rate_docs, "fresh_p50": p50, "fresh_p99": p99}
        e_runs.append(raw_throughput(f"round {r}, after"))
        ratio = P / ((e_runs[-2] + e_runs[-1]) / 2)
        now = cpu_times()
        print(f"   round {r}: P/E = {ratio:.3f}   (CPU steal during the round: {steal_share(mark, now)})")
        mark = now
        p_runs.append(P)
        ratios.append(ratio)
    E, P, ratio = float(np.median(e_runs)), float(np.median(p_runs)), float(np.median(ratios))
    print(f"P/E = {ratio:.3f} (median of {len(ratios)} bracketed rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
          "   (goal >= 0.85)")  # fmt: skip
    key = "P/E_memory" if args.no_kafka else "P/E"
    results |= {"E": E, "P": P, key: ratio, "ratios": ", ".join(f"{x:.3f}" for x in ratios)}  # type: ignore[dict-item]
    # E is sentence-transformers' encode on the texts (it tokenises them). The pipeline runs the
    # model on the chunker's token ids instead; that path alone, for the record:
    t = time.perf_counter()
    embedder.encode_tokenised(texts, [c.token_ids for c in chunks])
    e_ids = len(texts) / (time.perf_counter() - t)
    print(
        f"E' the embedder on the chunker's token ids (the pipeline's path), once: {e_ids:8.1f} chunks/s; "
        f"P/E' = {P / e_ids:.3f}"
    )
    results |= {"E_token_ids": e_ids, "P/E_token_ids": P / e_ids}
    # The pipeline embeds a slice at a time (embed_slice_chunks, so a large document cannot hold
    # up the small ones behind it), not the whole corpus sorted by length in one call as E does.
    # The same path in calls of that size, in the corpus's order, shows what slicing costs:
    n = settings.embed_slice_chunks
    t = time.perf_counter()
    for b in range(0, len(texts), n):
        embedder.encode_tokenised(texts[b : b + n], [c.token_ids for c in chunks[b : b + n]])
    e_slices = len(texts) / (time.perf_counter() - t)
    print(
        f"E'' the same in calls of {n} chunks (the pipeline's slices), once: {e_slices:8.1f} chunks/s; "
        f"P/E'' = {P / e_slices:.3f}"
    )
    results |= {"E_slices": e_slices, "P/E_slices": P / e_slices}

    if args.device == "cpu" and not args.no_kafka:
        import torch

        def timed(dtype: str) -> tuple[np.ndarray, float]:
            emb = Embedder(batch_size=args.batch_size, dtype=dtype)
            emb.encode(texts[:64])
            t = time.perf_counter()
            vecs = emb.encode(texts)
            return vecs, time.perf_counter() - t

        fp32, f_s = timed("fp32")
        bf16, b_s = timed("bf16")
        e_s = f_s
        cos = np.sum(fp32 * bf16, axis=1)
        print(
            f"bf16: {len(texts) / b_s:8.1f} chunks/s, speed-up {e_s / b_s:.2f}x; cosine to fp32 "
            f"mean {cos.mean():.4f} min {cos.min():.4f}  (default only if min >= 0.99); "
            f"cpu bf16 support: {torch.backends.mkldnn.is_available()}"
        )
        results |= {
            "bf16_speedup": e_s / b_s,
            "bf16_cos_min": float(cos.min()),
            "bf16_cos_mean": float(cos.mean()),
        }
        # int8: dynamic quantisation of the Linear layers (torch.ao, fbgemm kernels), run eager.
        int8 = Embedder(batch_size=args.batch_size, dtype="fp32", frozen=False)
        int8.model = torch.ao.quantization.quantize_dynamic(int8.model, {torch.nn.Linear}, dtype=torch.qint8)
        int8.encode(texts[:64])
        t = time.perf_counter()
        q8 = int8.encode(texts)
        q_s = time.perf_counter() - t
        cos8 = np.sum(fp32 * q8, axis=1)
        print(
            f"int8: {len(texts) / q_s:8.1f} chunks/s, speed-up {e_s / q_s:.2f}x over fp32, {b_s / q_s:.2f}x over "
            f"bf16; cosine to fp32 mean {cos8.mean():.4f} min {cos8.min():.4f}  (default only if min >= 0.99)"
        )
        results |= {"int8_speedup": e_s / q_s, "int8_cos_min": float(cos8.min())}

    if args.record:
        _record(results, args)
    return 0


def run_through_kafka(
    settings: PipelineSettings,
    embedder: Embedder,
    events: list[DocumentEvent],
    chunk_counts: list[int],
    args: argparse.Namespace,
    freshness: bool,
) -> tuple[float, tuple[float, float, float, int] | None]:
    """P through Kafka on a fresh topic, group and store; then, if asked, freshness at half of P:
    documents re-published as new versions at that rate (``chunk_counts[i]``: event i's chunks),
    source timestamp to searchable."""
    conf = settings.kafka.librdkafka()
    topic = new_topic(conf, args.partitions)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with Publisher(settings.kafka, topic=topic) as pub:
        pub.publish_many(events)
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-bench-"))
    ps = settings.model_copy(
        update={
            "source_topics": [topic],
            "cdc_topics": [],
            "pipeline_group": group,
            "qdrant": bench_qdrant(tmp),
            "features_topic": None,
        }
    )
    progress = Progress(conf, group, topic)
    running = start_in_thread(ps, embedder=embedder)
    try:
        metrics = running.runtime.metrics
        t = time.perf_counter()
        # P is "Kafka in to written": timed from the first event read, as E is timed on a warm
        # model. What came before (consumer start, partition assignment) is printed beside it.
        while not sum(
            s.value for m in metrics.events_in.collect() for s in m.samples if s.name.endswith("_total")
        ):
            time.sleep(0.005)
        t_in = time.perf_counter()
        cpu = CpuShare().start()
        progress.wait()
        end = time.perf_counter()
        cores = cpu.stop()
        written = metrics.chunks_written._value.get()
        P = written / (end - t_in)
        model_s = metrics.embed_seconds._sum.get()  # summed over slices, which overlap
        print(
            f"   first event read {t_in - t:.2f} s after start ({written / (end - t):.1f} chunks/s counted "
            f"from start); {end - t_in:.1f} s from it to the last commit, with {model_s / (end - t_in):.2f} "
            f"slices in the model on average (at most the {embedder.streams} streams keep it busy); "
            f"{shares(cores)}"
        )
        if not freshness:
            return P, None
        # Offered load: half of P in P's own unit, chunks per second. Each document is published
        # its chunk count's share of time after the one before, so a stretch of large documents
        # is offered at half of P too (pacing documents at the mean rate offered some stretches
        # of this corpus above P, and measured the queue that overload builds, not latency).
        rate = 0.5 * P
        due = 0.0
        schedule: list[tuple[float, DocumentEvent]] = []
        for ev, count in zip(events, chunk_counts, strict=True):
            if due > args.freshness_seconds and len(schedule) >= 5:
                break
            schedule.append((due, ev))
            due += count / rate
        with Publisher(settings.kafka, topic=topic) as pub:
            t0 = time.perf_counter()
            for at, ev in schedule:
                delay = t0 + at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pub.publish(ev.model_copy(update={"version": 2, "source_ts": utcnow()}))
        progress.wait()
        time.sleep(0.5)
        lat = _freshness(running.runtime.store, version=2)
        return P, (percentile(lat, 50), percentile(lat, 99), len(schedule) / due, len(lat))
    finally:
        running.stop()
        progress.close()
        forget(conf, topic, group)


def run_from_memory(
    settings: PipelineSettings, embedder: Embedder, events: list[DocumentEvent]
) -> tuple[float, int]:
    """The same dataflow (validate ... write to Qdrant) fed from memory instead of Kafka."""
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import TestingSource, run_main

    from streams.batch import Work
    from streams.flow import Runtime, build_flow
    from streams.kafka_source import RawBatch, RawMessage

    written = [0]

    class _Null(StatelessSinkPartition[Work]):
        def write_batch(self, items: list[Work]) -> None:
            written[0] += sum(w.written_chunks for w in items)

    class NullSink(DynamicSink[Work]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Null:
            return _Null()

    msgs = [RawMessage("mem", 0, i, ev.key.encode(), ev.to_bytes(), 0) for i, ev in enumerate(events)]
    n = settings.max_batch_messages
    batches = [RawBatch("mem", 0, tuple(msgs[i : i + n]), i // n) for i in range(0, len(msgs), n)]
    tmp = Path(tempfile.mkdtemp(prefix="streamrag-bench-mem-"))
    ps = settings.model_copy(
        update={
            "qdrant": bench_qdrant(tmp),
            "features_topic": None,
            "cdc_topics": [],
        }
    )
    rt = Runtime.create(ps, embedder=embedder)
    flow = build_flow(ps, rt, source=TestingSource(batches), sink=NullSink())
    t = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t, written[0]


def _freshness(store: Any, version: int) -> list[float]:
    points = [pl for _, pl in store.store.scroll(store.registry)]
    out = []
    for pl in points:
        if pl["version"] == version:
            src = datetime.fromisoformat(pl["source_ts"])
            idx = datetime.fromisoformat(pl["indexed_ts"])
            out.append((idx - src).total_seconds())
    return out


def _record(results: dict, args: argparse.Namespace) -> None:
    path = Path(__file__).with_name("RESULTS.md")
    line = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())
    with path.open("a") as fh:
        fh.write(
            f"\n- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} cpus, "
            f"{args.device}), bench/ingest.py --docs {args.docs} --batch-size {args.batch_size} --workers {args.workers} "
            f"--dtype {args.dtype}: {line}\n"
        )
    print(f"recorded in {path}")


if __name__ == "__main__":
    sys.exit(main())
