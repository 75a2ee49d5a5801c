"""The labelled evaluation corpus: documents, queries with their relevant documents, and its files.

A :class:`Corpus` is plain data. Its invariants (checked by :meth:`Corpus.check`, which building and
loading always run): document ids are unique, query ids are unique, every query names at least one
relevant document and every relevant id names a document of the corpus.

On disk a corpus is a directory with ``documents.jsonl`` and ``queries.jsonl``, one JSON object a
line, in the field order of the dataclasses below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DOCUMENTS_FILE = "documents.jsonl"
QUERIES_FILE = "queries.jsonl"


class CorpusError(ValueError):
    """A corpus breaks one of its invariants, or its files cannot be read as a corpus."""


class SourceMissingError(RuntimeError):
    """A text source is not installed; the message names the Debian packages that provide it."""


@dataclass(frozen=True, slots=True)
class EvalDocument:
    """One retrievable document. ``source`` names where it came from (``debian-faq``, ``manpages``)."""

    doc_id: str
    title: str
    body: str
    source: str


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """A question and the ids of the documents that answer it (binary relevance)."""

    query_id: str
    text: str
    relevant_doc_ids: list[str]
    source: str


@dataclass(frozen=True, slots=True)
class CorpusStats:
    documents: int
    queries: int
    total_chars: int
    mean_doc_chars: float
    by_source: dict[str, tuple[int, int]] = field(default_factory=dict)
    """``source -> (documents, queries)``."""


@dataclass(slots=True)
class Corpus:
    """Documents sorted by ``doc_id`` and queries sorted by ``query_id``."""

    documents: list[EvalDocument]
    queries: list[EvalQuery]

    def check(self) -> Corpus:
        """Raise :class:`CorpusError` naming the first broken invariant; return ``self`` when sound."""
        ids: set[str] = set()
        for doc in self.documents:
            if doc.doc_id in ids:
                raise CorpusError(f"duplicate doc_id {doc.doc_id!r}")
            ids.add(doc.doc_id)
        query_ids: set[str] = set()
        for query in self.queries:
            if query.query_id in query_ids:
                raise CorpusError(f"duplicate query_id {query.query_id!r}")
            query_ids.add(query.query_id)
            if not query.relevant_doc_ids:
                raise CorpusError(f"query {query.query_id!r} has no relevant document")
            missing = [d for d in query.relevant_doc_ids if d not in ids]
            if missing:
                raise CorpusError(f"query {query.query_id!r} names unknown documents {missing}")
        return self

    def head(self, n: int) -> Corpus:
        """The first ``n`` documents and the queries they answer (each query keeps only the
        relevant documents among them; one left with none is dropped)."""
        documents = self.documents[:n]
        kept = {doc.doc_id for doc in documents}
        queries = []
        for query in self.queries:
            relevant = [d for d in query.relevant_doc_ids if d in kept]
            if relevant:
                queries.append(EvalQuery(query.query_id, query.text, relevant, query.source))
        return Corpus(documents, queries)

    def documents_by_id(self) -> dict[str, EvalDocument]:
        """A fresh ``doc_id -> document`` map."""
        return {doc.doc_id: doc for doc in self.documents}

    def save_jsonl(self, directory: Path) -> Path:
        """Write the two JSONL files into ``directory`` (created if needed); return ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        _write_jsonl(directory / DOCUMENTS_FILE, [asdict(d) for d in self.documents])
        _write_jsonl(directory / QUERIES_FILE, [asdict(q) for q in self.queries])
        return directory

    @classmethod
    def load_jsonl(cls, directory: Path) -> Corpus:
        """Read a corpus written by :meth:`save_jsonl`; :class:`CorpusError` if it is not one."""
        try:
            documents = [EvalDocument(**row) for row in _read_jsonl(directory / DOCUMENTS_FILE)]
            queries = [EvalQuery(**row) for row in _read_jsonl(directory / QUERIES_FILE)]
        except (OSError, TypeError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{directory} does not hold a readable corpus: {exc}") from exc
        return cls(documents, queries).check()


def corpus_stats(corpus: Corpus) -> CorpusStats:
    """Counts and sizes of ``corpus``; a document's size is ``len(title) + len(body)`` characters."""
    sizes = [len(d.title) + len(d.body) for d in corpus.documents]
    by_source: dict[str, tuple[int, int]] = {}
    for doc in corpus.documents:
        docs, queries = by_source.get(doc.source, (0, 0))
        by_source[doc.source] = (docs + 1, queries)
    for query in corpus.queries:
        docs, queries = by_source.get(query.source, (0, 0))
        by_source[query.source] = (docs, queries + 1)
    return CorpusStats(
        documents=len(sizes),
        queries=len(corpus.queries),
        total_chars=sum(sizes),
        mean_doc_chars=sum(sizes) / len(sizes) if sizes else 0.0,
        by_source=dict(sorted(by_source.items())),
    )


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    # Write beside and rename, so a reader never sees half a file.
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
