"""``streamrag eval --study``: the retrieval study, every index and query variant on real corpora.

For each corpus and each *index variant* (chunk size and overlap, word windows, where the title
goes, the embedder) the corpus is indexed into a fresh embedded Qdrant (Qdrant Edge) by the
pipeline's own steps (:mod:`streams.steps`: clean, chunk, embed, write with the version registry)
in this process, timed, and measured on disk; then every *query variant* (dense, sparse, hybrid
with weighted, RRF or DBSF fusion, documents scored by their best chunk or the sum of their best
chunks, parent reranking) runs each labelled question through the API's own
:class:`~serving.retrieval.search.Retriever`. Kafka is not involved: the study measures ranking,
and the pipeline's throughput through Kafka is ``bench/ingest.py``'s subject.

The study sits in the app layer because it composes the pipeline and the API's retriever.

Index variants other than the pipeline's own chunking are built here from the same pieces:

* ``title=none``: the document is chunked without its title (the payload keeps it);
* ``title=every``: every chunk's embedded text starts with the title (the body is cut into windows
  ``title_tokens`` shorter, so title and window still fit the model);
* word windows: ``words`` words a window, ``word_overlap`` shared (the model cuts what exceeds its
  input, as plain sentence-transformers code does; the share of windows cut is reported).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from serving.eval.live import to_event_id
from serving.eval.runner import RetrievalReport, evaluate_retrieval
from serving.eval.schema import Corpus
from serving.retrieval.rerank import ParentEmbeddingReranker
from serving.retrieval.search import QueryEncoder, Retriever, hybrid_weight_for
from streamrag.contracts import DocumentEvent, Op
from streamrag.store.edge import EdgeStore
from streams import steps
from streams.batch import ChunkVectors, Sourced, Work
from streams.clean import clean_text
from streams.embed import Embedder
from streams.index_store import IndexStore

TENANT = "study"
ALIAS = "study"
BATCH_DOCS = 32


@dataclass(frozen=True, slots=True)
class IndexVariant:
    """How a corpus is indexed. ``words`` set: word windows instead of the token chunker."""

    name: str
    chunk_tokens: int = 128
    overlap: int = 32
    parent_tokens: int = 384
    title: Literal["first", "every", "none"] = "first"
    words: int | None = None
    word_overlap: int = 0
    model_path: Path | None = None
    model_version: str = "minilm-l6-v2"
    title_tokens: int = 24
    """The title header's budget with ``title=every`` (the pipeline's ``title_tokens``)."""

    @classmethod
    def shipped(cls) -> IndexVariant:
        """The pipeline's default settings (``PipelineSettings()``), named "defaults"."""
        from streams.settings import PipelineSettings

        p = PipelineSettings()
        return cls("defaults", p.chunk_tokens, p.chunk_overlap, p.parent_tokens, p.chunk_title,
                   title_tokens=p.title_tokens)  # fmt: skip


@dataclass(frozen=True, slots=True)
class QueryVariant:
    """How a question is searched (the API's request knobs)."""

    name: str
    hybrid_weight: float = 1.0
    fusion: str = "weighted"
    doc_chunks: int = 1
    rerank: bool = False
    question_weight: float | None = None
    """The dense share for questions (:func:`~serving.retrieval.search.looks_like_question`)."""
    identifier_weight: float | None = None
    """The dense share for queries naming an identifier (:func:`~serving.retrieval.search.has_identifier`)."""
    only_on: tuple[str, ...] | None = None
    """Index variants this one runs on (None: all); parent reranking costs ~1 s a question on 2 cores."""

    @classmethod
    def shipped(cls) -> QueryVariant:
        """The API's default settings (``ApiSettings()``), named "defaults"."""
        from serving.settings import ApiSettings

        a = ApiSettings()
        return cls(
            "defaults", a.hybrid_weight, a.fusion, rerank=a.rerank, question_weight=a.question_hybrid_weight
        )


INDEX_VARIANTS: tuple[IndexVariant, ...] = (
    IndexVariant("tokens 128/32"),
    IndexVariant("tokens 254/64", chunk_tokens=254, overlap=64, parent_tokens=508),
    IndexVariant("tokens 254/64, no title", chunk_tokens=254, overlap=64, parent_tokens=508, title="none"),
    IndexVariant("tokens 254/64, title in every chunk", chunk_tokens=254, overlap=64, parent_tokens=508, title="every"),
    IndexVariant("words 180/40", words=180, word_overlap=40),
)  # fmt: skip
"""The index side of the study (``tokens 128/32`` is the pipeline's chunking before the study)."""

QUERY_VARIANTS: tuple[QueryVariant, ...] = (
    QueryVariant("dense"),
    QueryVariant("sparse", hybrid_weight=0.0),
    QueryVariant("weighted 0.5", hybrid_weight=0.5),
    QueryVariant("weighted 0.7", hybrid_weight=0.7),
    QueryVariant("weighted 0.9", hybrid_weight=0.9),
    QueryVariant("rrf 0.5", hybrid_weight=0.5, fusion="rrf"),
    QueryVariant("rrf 0.7", hybrid_weight=0.7, fusion="rrf"),
    QueryVariant("dbsf 0.5", hybrid_weight=0.5, fusion="dbsf"),
    QueryVariant("dbsf 0.7", hybrid_weight=0.7, fusion="dbsf"),
    QueryVariant("weighted 0.6", hybrid_weight=0.6),
    QueryVariant("weighted 0.8", hybrid_weight=0.8),
    QueryVariant("weighted 0.5, questions 0.9", hybrid_weight=0.5, question_weight=0.9),
    QueryVariant("weighted 0.6, questions 0.9", hybrid_weight=0.6, question_weight=0.9),
    QueryVariant("weighted 0.7, questions 1.0", hybrid_weight=0.7, question_weight=1.0),
    QueryVariant(
        "weighted 0.6, questions 0.9, identifiers 0.4", 0.6, question_weight=0.9, identifier_weight=0.4
    ),
    QueryVariant("dense, sum of 2 chunks", doc_chunks=2),
    QueryVariant("dense, sum of 3 chunks", doc_chunks=3),
    QueryVariant(
        "defaults + parent rerank",
        0.6,
        rerank=True,
        question_weight=0.9,
        identifier_weight=0.4,
        only_on=("defaults",),
    ),
)
"""The query side of the study, run on every index variant."""


@dataclass(slots=True)
class IndexBuild:
    """An index built for one variant: where it is, and what it cost."""

    variant: IndexVariant
    store: EdgeStore
    folder: Path
    documents: int
    chunks: int
    seconds: float
    bytes_on_disk: int
    truncated_chunks: int = 0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class StudyRow:
    corpus: str
    index: str
    query: str
    queries: int
    metrics: dict[str, float]
    chunks: int
    chunks_per_s: float
    index_mb: float
    latency_ms_p50: float
    extra: dict[str, Any] = field(default_factory=dict)


def _events(corpus: Corpus) -> list[Sourced]:
    now = datetime.now(UTC)
    return [
        Sourced(
            DocumentEvent(tenant=TENANT, doc_id=to_event_id(d.doc_id), version=1, op=Op.UPSERT,
                          title=d.title, body=d.body, source_ts=now),
            "study", 0, n,
        )
        for n, d in enumerate(corpus.documents)
    ]  # fmt: skip


class WordWindows:
    """``words``-word windows sharing ``overlap`` words, one parent per window (study only)."""

    def __init__(self, words: int, overlap: int) -> None:
        if not 0 <= overlap < words:
            raise ValueError(f"overlap {overlap} must be in [0, {words})")
        self.words, self.stride = words, words - overlap

    def windows(self, text: str) -> list[str]:
        tokens = text.split()
        starts = range(0, max(1, len(tokens) - (self.words - self.stride)), self.stride)
        return [" ".join(tokens[s : s + self.words]) for s in starts if tokens[s : s + self.words]]


def _chunk(
    work: Work, variant: IndexVariant, chunker: Any, words: WordWindows | None, tokenizer: Any, limit: int
) -> tuple[Work, int]:
    """The variant's chunk step, and how many of its windows the model will cut at ``limit`` tokens.

    Token windows go through the pipeline's own step (title first or in every chunk,
    :class:`streams.steps.TitleHeader`); without the title or as word windows they are cut here."""
    if words is None and variant.title != "none":
        header = steps.TitleHeader(tokenizer, variant.title_tokens) if variant.title == "every" else None
        return steps.chunk(work, chunker, header), 0
    docs, truncated = [], 0
    for doc in work.docs:
        body = steps.document_text(doc.title, doc.body) if variant.title == "first" else doc.body
        texts = words.windows(body) if words is not None else [c.text for c in chunker.chunk(body)]
        ids: list[Any] = [None] * len(texts)
        if words is not None:  # cut to the model's input as plain sentence-transformers code would
            ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
            truncated += sum(len(row) > limit for row in ids)
        chunks = tuple(
            ChunkVectors(index=i, text=t, parent_index=i, parent_text=t,
                         token_ids=tuple(ids[i][:limit]) if ids[i] is not None else None)
            for i, t in enumerate(texts)
        )  # fmt: skip
        docs.append(replace(doc, chunks=chunks))
    return replace(work, docs=tuple(docs)), truncated


def build_index(
    corpus: Corpus, variant: IndexVariant, embedder: Embedder, root: Path, echo: Callable[[str], None] = print
) -> IndexBuild:
    """Index ``corpus`` into a fresh Edge store under ``root`` the pipeline's way (module docstring)."""
    from streams.flow import make_chunker
    from streams.settings import PipelineSettings

    settings = PipelineSettings(
        chunk_tokens=variant.chunk_tokens, chunk_overlap=variant.overlap, parent_tokens=variant.parent_tokens,
        chunk_title="every" if variant.title == "every" else "first", title_tokens=variant.title_tokens,
    )  # fmt: skip
    chunker, _ = make_chunker(settings, embedder.tokenizer, embedder.max_tokens)  # the pipeline's own
    words = WordWindows(variant.words, variant.word_overlap) if variant.words else None
    folder = Path(tempfile.mkdtemp(prefix="study-", dir=root))
    store = EdgeStore(folder, index_quiet_s=3600.0)  # optimised once, below, after the writes
    index = IndexStore(store, ALIAS, variant.model_version, embedder.dim, variant.model_version)
    index.ensure()
    events = _events(corpus)
    started = time.perf_counter()
    chunks = truncated = 0
    limit = embedder.max_tokens - 2
    for first in range(0, len(events), BATCH_DOCS):
        batch = events[first : first + BATCH_DOCS]
        work = Work("study", 0, batch[-1].offset + 1, len(batch), events=tuple(batch))
        work, cut = _chunk(steps.clean(work, clean_text), variant, chunker, words, embedder.tokenizer, limit)
        truncated += cut
        work = steps.embed(work, embedder)
        chunks += index.apply(list(work.docs))
        echo(
            f"\r  {variant.name}: {min(first + BATCH_DOCS, len(events))}/{len(events)} documents, {chunks} chunks"
        )
    store.optimize(index.collection)
    seconds = time.perf_counter() - started
    # Blocks in use, not apparent sizes: the engine's WAL preallocates sparse segment files.
    size = sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
    return IndexBuild(variant, store, folder, len(events), chunks, seconds, size, truncated)


def run_queries(
    corpus: Corpus, build: IndexBuild, encoder: QueryEncoder, variants: Iterable[QueryVariant]
) -> dict[str, RetrievalReport]:
    """Each query variant's report on one built index."""
    retriever = Retriever(
        build.store, ALIAS, encoder, candidates=40, reranker=ParentEmbeddingReranker(encoder.model)
    )
    original = {to_event_id(d.doc_id): d.doc_id for d in corpus.documents}
    reports = {}
    for v in variants:
        if v.only_on is not None and build.variant.name not in v.only_on:
            continue

        def search(text: str, k: int, v: QueryVariant = v) -> list[str]:
            weight = hybrid_weight_for(text, v.hybrid_weight, v.question_weight, v.identifier_weight)
            found = retriever.search(text, TENANT, k, hybrid_weight=weight, fusion=v.fusion,
                                     rerank=v.rerank, doc_chunks=v.doc_chunks)  # fmt: skip
            return [original.get(h.doc_id, h.doc_id) for h in found.hits]

        reports[v.name] = evaluate_retrieval(corpus, search, (1, 5, 10))
    return reports


def expansion_rows(
    name: str,
    corpus: Corpus,
    build: IndexBuild,
    encoder: QueryEncoder,
    generator: Callable[[], Any],
    base: QueryVariant,
    questions: int,
    seed: int = 0,
) -> list[StudyRow]:
    """Query expansion as the API does it (:func:`serving.retrieval.expansion.expand`: the question
    and the generator's keyword rewrite are both searched and fused by RRF, the question's hits
    kept), on a seeded sample of ``questions`` questions, beside ``base`` on the same sample.
    ``generator()`` makes the generator client (one per call: a client is bound to its event loop)."""
    import asyncio
    import random

    from serving.retrieval.expansion import expand
    from serving.retrieval.search import dedupe_latest, fuse

    sample = Corpus(corpus.documents, sorted(random.Random(seed).sample(corpus.queries, min(questions, len(corpus.queries))),
                                            key=lambda q: q.query_id))  # fmt: skip
    retriever = Retriever(build.store, ALIAS, encoder, candidates=40)
    original = {to_event_id(d.doc_id): d.doc_id for d in corpus.documents}

    async def rewrite_all() -> dict[str, str | None]:
        # a client made in this event loop, for every call: its HTTP connections belong to that loop
        client = generator()
        return {q.text: await expand(client, q.text) for q in sample.queries}

    started = time.perf_counter()
    rewrites = asyncio.run(rewrite_all())
    seconds = time.perf_counter() - started

    def hits(text: str, k: int) -> list[Any]:
        weight = hybrid_weight_for(text, base.hybrid_weight, base.question_weight, base.identifier_weight)
        return retriever.search(text, TENANT, k, hybrid_weight=weight, fusion=base.fusion).hits

    def plain(text: str, k: int) -> list[str]:
        return [original.get(h.doc_id, h.doc_id) for h in hits(text, k)]

    def expanded(text: str, k: int) -> list[str]:
        lists = [hits(text, k)] + ([hits(r, k)] if (r := rewrites[text]) else [])
        by_id = {h.point_id: h for found in lists for h in found}
        fused = fuse([[(h.point_id, h.score) for h in found] for found in lists], [1.0] * len(lists))
        return [original.get(h.doc_id, h.doc_id) for h in dedupe_latest([by_id[p] for p, _ in fused])][:k]

    out = []
    for label, fn in ((f"{base.name} (same {len(sample.queries)} questions)", plain),
                      (f"{base.name} + query expansion", expanded)):  # fmt: skip
        report = evaluate_retrieval(sample, fn, (1, 5, 10))
        out.append(StudyRow(name, build.variant.name, label, report.n_queries,
                            {m: round(e.mean, 4) for m, e in report.metrics.items()}, build.chunks,
                            round(build.chunks_per_s, 1), round(build.bytes_on_disk / 1e6, 2),
                            round(report.latency_ms_p50, 2),
                            {"rewrite_s_per_question": round(seconds / max(1, len(sample.queries)), 2),
                             "rewritten": sum(r is not None for r in rewrites.values())}))  # fmt: skip
    return out


def run_study(
    corpora: dict[str, Corpus],
    index_variants: Sequence[IndexVariant] = INDEX_VARIANTS,
    query_variants: Sequence[QueryVariant] = QUERY_VARIANTS,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
    generator: Any = None,
    expansion_questions: int = 0,
) -> list[StudyRow]:
    """Every (index variant x query variant) on every corpus; rows also appended to ``out`` (JSONL).

    With a ``generator`` and ``expansion_questions > 0``, query expansion is measured on the first
    index variant with the first query variant as its base (:func:`expansion_rows`)."""
    rows: list[StudyRow] = []
    root = Path(tempfile.mkdtemp(prefix="streamrag-study-"))
    embedders: dict[Path | None, tuple[Embedder, QueryEncoder]] = {}
    try:
        for name, corpus in corpora.items():
            echo(f"corpus {name}: {len(corpus.documents)} documents, {len(corpus.queries)} questions")
            for variant in index_variants:
                if variant.model_path not in embedders:
                    embedders[variant.model_path] = (
                        Embedder(variant.model_path),
                        QueryEncoder(variant.model_path),
                    )
                embedder, encoder = embedders[variant.model_path]
                build = build_index(
                    corpus, variant, embedder, root, lambda s: echo(s) if s.endswith("\n") else None
                )
                echo(f"  indexed {variant.name}: {build.chunks} chunks in {build.seconds:.1f} s "
                     f"({build.chunks_per_s:.0f} chunks/s), {build.bytes_on_disk / 1e6:.1f} MB")  # fmt: skip
                try:
                    reports = run_queries(corpus, build, encoder, query_variants)
                    extra_rows = (
                        expansion_rows(
                            name, corpus, build, encoder, generator, query_variants[0], expansion_questions
                        )
                        if generator is not None and expansion_questions > 0 and variant == index_variants[0]
                        else []
                    )
                finally:
                    build.store.close()
                    shutil.rmtree(build.folder, ignore_errors=True)
                built = [
                    StudyRow(
                        name, variant.name, qname, report.n_queries,
                        {m: round(e.mean, 4) for m, e in report.metrics.items()},
                        build.chunks, round(build.chunks_per_s, 1), round(build.bytes_on_disk / 1e6, 2),
                        round(report.latency_ms_p50, 2),
                        {"truncated_chunks": build.truncated_chunks} if build.truncated_chunks else {},
                    )
                    for qname, report in reports.items()
                ]  # fmt: skip
                for row in built + extra_rows:
                    rows.append(row)
                    echo(
                        f"    {row.query:28s} MRR@10 {row.metrics['mrr@10']:.3f}  R@5 {row.metrics['recall@5']:.3f}"
                    )
                    if out is not None:
                        with out.open("a", encoding="utf-8") as f:
                            f.write(json.dumps(asdict(row)) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def markdown_table(rows: Sequence[StudyRow]) -> str:
    """One table: a row per (corpus, index, query) with recall@1/5/10, MRR@10 and the index cost."""
    head = ("| corpus | index | query | R@1 | R@5 | R@10 | MRR@10 | chunks | chunks/s | index MB |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
    best = {c: max(r.metrics["mrr@10"] for r in rows if r.corpus == c) for c in {r.corpus for r in rows}}
    lines = [head]
    for r in rows:
        mrr = f"{r.metrics['mrr@10']:.3f}"
        mrr = f"**{mrr}**" if r.metrics["mrr@10"] == best[r.corpus] else mrr
        lines.append(
            f"| {r.corpus} | {r.index} | {r.query} | {r.metrics['recall@1']:.3f} | {r.metrics['recall@5']:.3f} | "
            f"{r.metrics['recall@10']:.3f} | {mrr} | {r.chunks} | {r.chunks_per_s:.0f} | {r.index_mb:.1f} |"
        )
    return "\n".join(lines)


def load_rows(path: Path) -> list[StudyRow]:
    return [
        StudyRow(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def default_corpora(max_docs: int | None) -> dict[str, Corpus]:
    """The study's built-in corpora, each on its own: the Debian FAQ, man pages, Policy Manual."""
    from serving.eval.corpus import SOURCES, build_corpus

    return {source: build_corpus(max_docs=max_docs, sources=[source]) for source in SOURCES}


V = TypeVar("V", IndexVariant, QueryVariant)


def _chosen(
    variants: list[V], names: Sequence[str], kind: str, echo: Callable[[str], None]
) -> list[V] | None:
    """The ``variants`` named in ``names`` (all when empty); None, after saying why, if one is unknown."""
    if not names:
        return variants
    unknown = sorted(set(names) - {v.name for v in variants})
    if unknown:
        echo(f"unknown {kind} variants {unknown}; known: {[v.name for v in variants]}")
        return None
    return [v for v in variants if v.name in names]


def run_study_cli(
    max_docs: int | None,
    corpus_files: Sequence[Path],
    index_names: Sequence[str],
    query_names: Sequence[str],
    model_path: Path | None,
    out: Path | None,
    echo: Callable[[str], None] = print,
    expansion_questions: int = 0,
) -> int:
    """``streamrag eval --study``: run, print the table; 2 when a variant name is unknown."""
    import os

    from serving.eval.user_corpus import load_user_corpus

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    known = [IndexVariant.shipped(), *INDEX_VARIANTS]
    if model_path is not None:
        known.append(
            IndexVariant(f"{model_path.name}, tokens 254/64, title in every chunk", chunk_tokens=254,
                         overlap=64, parent_tokens=508, title="every", model_path=model_path,
                         model_version=model_path.name.lower().replace("_", "-"))
        )  # fmt: skip
    variants = _chosen(known, index_names, "index", echo)
    queries = _chosen([QueryVariant.shipped(), *QUERY_VARIANTS], query_names, "query", echo)
    if variants is None or queries is None:
        return 2
    corpora = (
        {p.stem: load_user_corpus(p) for p in corpus_files} if corpus_files else default_corpora(max_docs)
    )
    generator, llm = None, None
    if expansion_questions > 0:
        from serving.generation.client import Generator
        from serving.llm.launch import start_llm
        from serving.settings import ApiSettings

        api = ApiSettings()
        llm = None if api.tgi_url else start_llm(api.llm_port)
        generator = lambda: Generator.from_settings(api)  # noqa: E731 - one client per event loop
    try:
        rows = run_study(corpora, variants, queries, out, echo, generator, expansion_questions)
    finally:
        if llm is not None:
            llm.stop()
    echo(markdown_table(rows))
    echo("")
    echo(mrr_pivot(rows))
    return 0


def mrr_pivot(rows: Sequence[StudyRow]) -> str:
    """MRR@10 with a row per (corpus, index variant) and a column per query variant; each corpus's
    best in bold. The same numbers as :func:`markdown_table`, laid out to compare at a glance."""
    queries = list(dict.fromkeys(r.query for r in rows))
    keys = list(dict.fromkeys((r.corpus, r.index) for r in rows))
    cell = {(r.corpus, r.index, r.query): r.metrics["mrr@10"] for r in rows}
    best = {c: max(v for (cc, _, _), v in cell.items() if cc == c) for c, _ in keys}
    lines = ["| corpus | index | " + " | ".join(queries) + " |", "| --- | --- |" + " --- |" * len(queries)]
    for corpus, index in keys:
        values = []
        for q in queries:
            v = cell.get((corpus, index, q))
            text = "" if v is None else f"{v:.3f}"
            values.append(f"**{text}**" if v is not None and v == best[corpus] else text)
        lines.append(f"| {corpus} | {index} | " + " | ".join(values) + " |")
    return "\n".join(lines)
