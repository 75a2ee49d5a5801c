"""The dataflow's step logic as plain functions of a :class:`~streams.batch.Work` batch.

Each takes a batch and its collaborators and returns the next batch; :mod:`streams.flow` only
wires them together. They are unit-testable without Bytewax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from streamrag.contracts import FeatureRecord, Op, utcnow
from streams.batch import ChunkVectors, PreparedDoc, Sourced, Work
from streams.index_store import Registered, order_of


class Chunks(Protocol):
    def chunk_many(self, texts: Sequence[str]) -> list[list]: ...


def coalesce(events: tuple[Sourced, ...]) -> tuple[list[Sourced], int]:
    """Keep each document's largest ``order`` in the batch; returns (kept, dropped)."""
    best: dict[str, Sourced] = {}
    for src in events:
        cur = best.get(src.event.key)
        if cur is None or src.event.order_key >= cur.event.order_key:
            best[src.event.key] = src
    kept = sorted(best.values(), key=lambda s: s.offset)
    return kept, len(events) - len(kept)


def fence(work: Work, registered: dict[str, Registered]) -> Work:
    """Drop events that are not newer than what the index holds for their document.

    ``registered`` is the registry's latest entry per document (:meth:`IndexStore.latest`).
    A delete at version v outranks an upsert at v, so a replayed upsert never undoes a delete.
    """
    kept, dropped = coalesce(work.events)
    fresh = []
    for src in kept:
        top = registered.get(src.event.key)
        if top is not None and order_of(src.event.version, src.event.op) <= top.order:
            dropped += 1
            continue
        fresh.append(src)
    return replace(work, events=tuple(fresh), fenced=work.fenced + dropped)


def clean(work: Work, clean_text: Callable[[str], str]) -> Work:
    """Clean every upsert's title and body into a :class:`PreparedDoc`; deletes pass through."""
    docs = []
    for src in work.events:
        ev = src.event
        if ev.op is Op.DELETE:
            docs.append(PreparedDoc(src))
        else:
            docs.append(PreparedDoc(src, title=clean_text(ev.title), body=clean_text(ev.body)))
    return replace(work, docs=tuple(docs), events=())


class TitleHeader:
    """A document's title as the header embedded with every chunk (``chunk_title="every"``).

    The title is cut to whole words within ``max_tokens`` tokens of ``tokenizer``, so header and
    window fit the model together; :meth:`ids` are its tokens when its words tokenise
    independently (a WordPiece tokenizer), so the embedder need not tokenise the pair again.
    """

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def cut(self, title: str) -> tuple[str, tuple[int, ...]]:
        """``(header, its token ids)``: the longest run of the title's first words that fits."""
        words = title.split()
        ids: list[int] = self._tokenizer(" ".join(words), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        while len(ids) > self.max_tokens and words:
            words = words[: max(0, min(len(words) - 1, len(words) * self.max_tokens // len(ids)))]
            ids = self._tokenizer(" ".join(words), add_special_tokens=False, verbose=False)["input_ids"]
        return " ".join(words), tuple(ids)


def chunk(work: Work, chunker: Chunks, header: TitleHeader | None = None) -> Work:
    """Chunk each upsert; every chunk can be found by its document's title words.

    Without ``header`` the title and body are chunked as one text (the title is the first
    chunk's opening); with it the body alone is chunked and the title is embedded as every
    chunk's header (:class:`TitleHeader`). The batch's texts are tokenised together
    (:meth:`Chunker.chunk_many`)."""
    upserts = [i for i, doc in enumerate(work.docs) if doc.src.event.op is not Op.DELETE]
    texts = [
        work.docs[i].body if header is not None else document_text(work.docs[i].title, work.docs[i].body)
        for i in upserts
    ]
    cut = dict(zip(upserts, chunker.chunk_many(texts), strict=True))
    docs = []
    for i, doc in enumerate(work.docs):
        if i not in cut:
            docs.append(doc)  # a delete
            continue
        head, head_ids = header.cut(doc.title) if header is not None and doc.title else ("", ())
        chunks = tuple(
            ChunkVectors(
                index=c.index,
                text=c.text,
                parent_index=c.parent_index,
                parent_text=c.parent_text,
                token_ids=c.token_ids,
                header=head,
                header_ids=head_ids if head else None,
            )
            for c in cut[i]
        )
        if not chunks and head:  # a document with a title and no body: the title is its text
            chunks = (ChunkVectors(index=0, text=head, parent_index=0, parent_text=head, token_ids=head_ids),)
        docs.append(replace(doc, chunks=chunks))
    return replace(work, docs=tuple(docs))


def document_text(title: str, body: str) -> str:
    """The text a document is chunked as: its title and body, a paragraph apart."""
    return f"{title}\n\n{body}" if title and body else title or body


class Encodes(Protocol):
    def complete_ids(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[int]]: ...

    def encode_tokenised(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]
    ):  # -> np.ndarray
        ...

    def sparse_batch(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[tuple[list[int], list[float]]]: ...


class EmbedJob:
    """One batch's chunks, embedded a slice at a time: dense and sparse vectors for every chunk,
    encoded together across the batch's documents.

    The rows are put longest first once, so consecutive slices pad like one big call would (the
    model pads each ``batch_size`` batch to its longest row). The chunker's token ids spare the
    model and the sparse encoding a tokenisation each; the few chunks without them are tokenised
    once, here, for both.
    """

    def __init__(self, work: Work, embedder: Encodes) -> None:
        self.work = work
        self._embedder = embedder
        chunks = [ch for doc in work.docs for ch in doc.chunks]
        self._texts = [ch.embedded_text for ch in chunks]
        self._ids = embedder.complete_ids(self._texts, [ch.embedded_ids for ch in chunks]) if chunks else []
        self._order = sorted(range(len(chunks)), key=lambda i: -len(self._ids[i]))
        self._dense: list[list[float]] = [[] for _ in chunks]
        self._sparse: list[tuple[list[int], list[float]]] = [([], []) for _ in chunks]
        self._done = 0

    @property
    def remaining(self) -> int:
        """Chunks still to embed."""
        return len(self._order) - self._done

    def advance(self, max_chunks: int) -> int:
        """Embed up to ``max_chunks`` more chunks; returns how many."""
        return embed_together(self._embedder, [(self, max_chunks)])

    def next_rows(self, n: int) -> list[tuple[str, list[int]]]:
        """(text, token ids) of the next ``n`` chunks to embed (at most what remains)."""
        return [(self._texts[i], self._ids[i]) for i in self._order[self._done : self._done + max(0, n)]]

    def accept(self, dense: list[list[float]], sparse: list[tuple[list[int], list[float]]]) -> None:
        """The vectors of the next ``len(dense)`` chunks, in :meth:`next_rows` order."""
        rows = self._order[self._done : self._done + len(dense)]
        if len(rows) != len(dense) or len(sparse) != len(dense):
            raise ValueError("vectors for more chunks than remain, or dense and sparse differ in number")
        for n, i in enumerate(rows):
            self._dense[i], self._sparse[i] = dense[n], sparse[n]
        self._done += len(rows)

    def result(self) -> Work:
        """The batch with every chunk's vectors (all of them embedded)."""
        if self.remaining:
            raise RuntimeError(f"{self.remaining} chunks of the batch are not embedded yet")
        if not self._texts:
            return self.work
        row = 0
        docs: list[PreparedDoc] = []
        for doc in self.work.docs:
            chunks = []
            for ch in doc.chunks:
                idx, vals = self._sparse[row]
                chunks.append(
                    replace(
                        ch,
                        dense=tuple(self._dense[row]),
                        sparse_indices=tuple(idx),
                        sparse_values=tuple(vals),
                    )
                )
                row += 1
            docs.append(replace(doc, chunks=tuple(chunks)))
        return replace(self.work, docs=tuple(docs))


def embed_together(embedder: Encodes, plan: Sequence[tuple[EmbedJob, int]]) -> int:
    """Embed the next ``n`` chunks of each ``(job, n)`` in one call (the model batches them across
    jobs, longest first); returns how many chunks were embedded."""
    parts = [(job, job.next_rows(n)) for job, n in plan]
    texts = [text for _, rows in parts for text, _ in rows]
    if not texts:
        return 0
    ids = [row_ids for _, rows in parts for _, row_ids in rows]
    dense = embedder.encode_tokenised(texts, ids).tolist()  # one C-level conversion
    sparse = embedder.sparse_batch(texts, ids)
    start = 0
    for job, rows in parts:
        job.accept(dense[start : start + len(rows)], sparse[start : start + len(rows)])
        start += len(rows)
    return len(texts)


def embed(work: Work, embedder: Encodes) -> Work:
    """Every chunk of the batch embedded at once (:class:`EmbedJob` in one slice)."""
    job = EmbedJob(work, embedder)
    job.advance(job.remaining)
    return job.result()


def feature_records(work: Work, model_id: str) -> list[tuple[bytes, bytes]]:
    """One :class:`FeatureRecord` per written chunk, keyed by document."""
    now = utcnow()
    out = []
    for doc in work.docs:
        ev = doc.src.event
        for ch in doc.chunks:
            rec = FeatureRecord(
                tenant=ev.tenant,
                doc_id=ev.doc_id,
                version=ev.version,
                chunk_index=ch.index,
                model_id=model_id,
                embedding=[round(x, 6) for x in ch.dense],
                source_ts=ev.source_ts,
                indexed_ts=now,
                source_topic=doc.src.topic,
                source_partition=doc.src.partition,
                source_offset=doc.src.offset,
            )
            out.append((ev.key.encode(), rec.to_bytes()))
    return out
