"""A training dataset from the stream-fed index, at a recorded point in time.

The feature pipeline keeps the Qdrant chunk collection equal to the sources; this module reads it
(through the API's alias, so it is the collection queries see now) and turns the documents into
(pseudo-query, positive passage) pairs without any labels:

* ``title``: a document's title is the query for its first chunk (title removed from the chunk).
  Used only when the title is unique in the snapshot: a title shared by many documents (a FAQ
  chapter name) would be a query with many right answers.
* ``sentence``: otherwise, a sentence of a chunk is the query for the rest of that chunk (the
  inverse-cloze task). A chunk's first segment is skipped after chunk 0 because chunks start at
  token boundaries, usually mid-sentence.

Pairs are split by document (a seeded hash of ``doc_key``), so no document has pairs on both
sides. The :class:`Snapshot` records what was read (collection, point count, newest
``indexed_ts``, a hash of every ``(doc_key, version)``, the pipeline's committed offsets), so a
run can be matched to the exact state of the sources it learned from.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from streamrag.contracts import ChunkPayload, Groups, utcnow
from streamrag.contracts import IndexSchema as S
from streamrag.store import Match, VectorStore
from training.offsets import committed_offsets
from training.settings import TrainingOptions, TrainingSettings

log = logging.getLogger("streamrag.training")

_SEGMENT_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """The payload fields of one chunk point that training needs."""

    doc_key: str
    version: int
    chunk_index: int
    title: str
    text: str
    indexed_ts: str


@dataclass(frozen=True, slots=True)
class Pair:
    """A pseudo-query and its positive passage, from one chunk of one document."""

    query: str
    passage: str
    doc_key: str
    chunk_index: int
    kind: Literal["title", "sentence"]


@dataclass(frozen=True)
class Snapshot:
    """What a dataset was built from. ``offsets``: group -> ``"topic:partition"`` -> committed offset."""

    alias: str
    collection: str
    tenant: str | None
    point_count: int
    document_count: int
    max_indexed_ts: str | None
    docs_sha256: str
    """sha256 of the sorted ``doc_key \\x1f version`` lines: equal hashes, equal document versions."""
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    taken_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    snapshot: Snapshot
    train: list[Pair]
    heldout: list[Pair]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able record a pair, with its split (what a run logs to reproduce its data)."""
        return [
            {**asdict(p), "split": split}
            for split, pairs in (("train", self.train), ("heldout", self.heldout))
            for p in pairs
        ]


# --- reading the store ------------------------------------------------------------------------------


def resolve_alias(store: VectorStore, alias: str) -> str:
    """The collection ``alias`` points at; ``alias`` itself when it is a collection, not an alias."""
    target = store.resolve(alias)
    if target is not None:
        return target
    if store.exists(alias):
        return alias
    raise LookupError(f"no collection or alias named {alias!r}: has the pipeline indexed anything yet?")


def scroll_chunks(
    store: VectorStore, collection: str, tenant: str | None = None, page: int = 1024
) -> list[Chunk]:
    """Every chunk point of ``collection`` (of one tenant when given), without vectors."""
    where = [Match.eq(S.TENANT, tenant)] if tenant is not None else []
    out = []
    for _, pl in store.scroll(collection, where, page=page):
        c = ChunkPayload.model_validate(pl)
        out.append(
            Chunk(
                c.doc_key or f"{c.tenant}/{c.doc_id}", c.version, c.chunk_index, c.title, c.text, c.indexed_ts
            )
        )
    return out


def take_snapshot(
    alias: str,
    collection: str,
    tenant: str | None,
    chunks: Sequence[Chunk],
    offsets: dict[str, dict[str, int]],
) -> Snapshot:
    versions = sorted({(c.doc_key, c.version) for c in chunks})
    digest = hashlib.sha256("".join(f"{k}\x1f{v}\n" for k, v in versions).encode()).hexdigest()
    stamps = [datetime.fromisoformat(c.indexed_ts) for c in chunks if c.indexed_ts]
    return Snapshot(
        alias=alias,
        collection=collection,
        tenant=tenant,
        point_count=len(chunks),
        document_count=len({k for k, _ in versions}),
        max_indexed_ts=max(stamps).isoformat() if stamps else None,
        docs_sha256=digest,
        offsets=offsets,
        taken_at=utcnow().isoformat(),
    )


# --- pairs --------------------------------------------------------------------------------------------


def _latest_documents(chunks: Iterable[Chunk]) -> dict[str, list[Chunk]]:
    """doc_key -> its chunks of its largest version, by chunk index (a racing older version is ignored)."""
    by_doc: dict[str, list[Chunk]] = defaultdict(list)
    for c in chunks:
        by_doc[c.doc_key].append(c)
    out: dict[str, list[Chunk]] = {}
    for key, cs in by_doc.items():
        top = max(c.version for c in cs)
        out[key] = sorted((c for c in cs if c.version == top), key=lambda c: c.chunk_index)
    return out


def _is_prose(segment: str, lo: int, hi: int) -> bool:
    """Starts upper-case and has ``lo..hi`` words, most of them real words (not man-page syntax)."""
    words = segment.split()
    wordy = sum(1 for w in words if sum(c.isalpha() for c in w) >= 2)
    return segment[:1].isupper() and lo <= len(words) <= hi and wordy >= lo and wordy >= 0.6 * len(words)


def _sentence_pair(chunk: Chunk, previous: str, taken: set[str], opts: TrainingOptions) -> Pair | None:
    """The chunk's first prose sentence not in the previous chunk (the overlap) nor ``taken`` already."""
    lo, hi = opts.query_words
    for i, seg in enumerate(s.strip() for s in _SEGMENT_BREAK.split(chunk.text)):
        if (
            (i == 0 and chunk.chunk_index > 0)
            or not _is_prose(seg, lo, hi)
            or seg in previous
            or seg in taken
        ):
            continue  # a later chunk starts mid-sentence; an overlapping sentence would answer two chunks
        passage = chunk.text.replace(seg, " ", 1).strip()
        if len(passage) >= opts.min_passage_chars:
            return Pair(seg, passage, chunk.doc_key, chunk.chunk_index, "sentence")
    return None


def make_pairs(chunks: Iterable[Chunk], opts: TrainingOptions) -> list[Pair]:
    """At most one pair per chunk and ``opts.max_pairs_per_doc`` per document, in document order."""
    docs = _latest_documents(chunks)
    titles = Counter(cs[0].title.strip().lower() for cs in docs.values() if cs[0].title.strip())
    pairs: list[Pair] = []
    for key in sorted(docs):
        made: list[Pair] = []
        previous = ""
        for chunk in docs[key]:
            if len(made) >= opts.max_pairs_per_doc:
                break
            pair = None
            title = chunk.title.strip()
            if chunk.chunk_index == 0 and title and titles[title.lower()] == 1:
                body = chunk.text[len(title) :] if chunk.text.startswith(title) else chunk.text
                if len(body.strip()) >= opts.min_passage_chars:
                    pair = Pair(title, body.strip(), key, chunk.chunk_index, "title")
            pair = pair or _sentence_pair(chunk, previous, {m.query for m in made}, opts)
            if pair is not None:
                made.append(pair)
            previous = chunk.text
        pairs.extend(made)
    return pairs


def _unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_pairs(pairs: Sequence[Pair], opts: TrainingOptions) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): whole documents go to one side; each side is a seeded sample of its cap."""
    train = [p for p in pairs if _unit_hash(opts.seed, "split", p.doc_key) >= opts.holdout_fraction]
    heldout = [p for p in pairs if _unit_hash(opts.seed, "split", p.doc_key) < opts.holdout_fraction]

    def sample(side: list[Pair], cap: int) -> list[Pair]:
        return sorted(side, key=lambda p: _unit_hash(opts.seed, "sample", p.doc_key, p.chunk_index))[:cap]

    return sample(train, opts.max_pairs), sample(heldout, opts.max_eval_pairs)


# --- all together -------------------------------------------------------------------------------------


def build_dataset(settings: TrainingSettings, store: VectorStore, tenant: str | None = None) -> Dataset:
    """Snapshot the live collection (behind ``settings.qdrant.collection``) and make the pairs."""
    alias = settings.qdrant.collection
    collection = resolve_alias(store, alias)
    chunks = scroll_chunks(store, collection, tenant)
    groups = [settings.pipeline_group]
    version = collection.removeprefix(f"{alias}__")
    if version != collection and version != settings.registry.base_model_version:
        groups.append(Groups.reindex(version))  # a re-indexed collection is fed by its reindex group
    conf = settings.kafka.librdkafka()
    offsets = {g: o for g in groups if (o := committed_offsets(conf, g, settings.source_topics)) is not None}
    snapshot = take_snapshot(alias, collection, tenant, chunks, offsets)
    train, heldout = split_pairs(make_pairs(chunks, settings.training), settings.training)
    log.info(
        "dataset from %s: %d points, %d documents -> %d train / %d held-out pairs",
        collection,
        snapshot.point_count,
        snapshot.document_count,
        len(train),
        len(heldout),
    )
    return Dataset(snapshot, train, heldout)
