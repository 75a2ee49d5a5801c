"""Build the labelled evaluation corpus from text installed on the machine, and cache it.

Sources (see their modules for the labelling rules):

* ``debian-faq`` (:mod:`serving.eval.faq`): FAQ question headings -> their answer sections;
* ``manpages`` (:mod:`serving.eval.manpages`): NAME descriptions -> the rest of the page;
* ``debian-policy`` (:mod:`serving.eval.policy`): the Policy Manual's section headings -> their text.

:func:`build_corpus` is deterministic: for the same arguments and the same installed files it
returns the same corpus (ids sorted, sampling seeded). Built corpora are cached as JSONL under
``CommonSettings().cache_dir / "eval"``, keyed by the arguments, :data:`BUILDER_VERSION` and a
fingerprint of the installed source files, so installing packages or changing the rules rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from serving.eval import faq, manpages, policy, roff
from serving.eval.schema import (
    Corpus,
    CorpusError,
    CorpusStats,
    EvalDocument,
    EvalQuery,
    SourceMissingError,
    corpus_stats,
)

__all__ = [
    "BUILDER_VERSION",
    "DEFAULT_SOURCES",
    "SOURCES",
    "Corpus",
    "CorpusError",
    "CorpusStats",
    "EvalDocument",
    "EvalQuery",
    "SourceMissingError",
    "build_corpus",
    "corpus_stats",
    "default_cache_dir",
]

SOURCES: tuple[str, ...] = (faq.SOURCE, manpages.SOURCE, policy.SOURCE)
DEFAULT_SOURCES: tuple[str, ...] = (faq.SOURCE, manpages.SOURCE)
"""What :func:`build_corpus` mixes when not told: the FAQ and the man pages (the Policy Manual is
its own corpus in the retrieval study, ``streamrag eval --study``)."""
BUILDER_VERSION = 2
"""Bump whenever extraction or labelling rules change: it is part of the cache key."""

Records = tuple[list[EvalDocument], list[EvalQuery]]


def default_cache_dir() -> Path:
    """``CommonSettings().cache_dir / "eval"`` (imported lazily: settings read the environment)."""
    from streamrag.config import CommonSettings

    return CommonSettings().cache_dir / "eval"


def build_corpus(
    max_docs: int | None = None,
    seed: int = 0,
    sources: Sequence[str] = DEFAULT_SOURCES,
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> Corpus:
    """The corpus of ``sources`` with at most ``max_docs`` documents (all when ``None``).

    ``max_docs`` is shared fairly: sources are filled in the order of :data:`SOURCES`, each
    getting ``ceil(remaining / sources left)`` documents, so a small source (the FAQ has ~130
    documents) leaves its unused share to the next. Within a source, documents are a seeded
    sample; a query is kept only when its relevant documents are all in the corpus.

    Raises :class:`SourceMissingError` (naming the apt packages to install) when a source is
    not installed and ``ValueError`` for an unknown source or a ``max_docs`` below 1.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"unknown or no sources {unknown or list(sources)}; known: {list(SOURCES)}")
    if max_docs is not None and max_docs < 1:
        raise ValueError(f"max_docs must be >= 1 or None, got {max_docs}")
    wanted = [s for s in SOURCES if s in sources]
    target = None
    if use_cache:
        key = _cache_key(max_docs, seed, wanted)
        target = (cache_dir or default_cache_dir()) / f"corpus-{key}"
        if target.is_dir():
            try:
                return Corpus.load_jsonl(target)
            except CorpusError:
                shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry is rebuilt
    corpus = _build(max_docs, seed, wanted)
    if target is not None:
        _store(corpus, target)
    return corpus


def _build(max_docs: int | None, seed: int, sources: list[str]) -> Corpus:
    documents: list[EvalDocument] = []
    queries: list[EvalQuery] = []
    remaining = max_docs
    for position, source in enumerate(sources):
        quota = None if remaining is None else math.ceil(remaining / (len(sources) - position))
        if source == faq.SOURCE:
            docs, qs = _sample(faq.load_faq(), quota, random.Random(f"{source}:{seed}"))
        elif source == policy.SOURCE:
            docs, qs = _sample(policy.load_policy(), quota, random.Random(f"{source}:{seed}"))
        else:
            docs, qs = manpages.load_manpages(quota, seed)
        documents.extend(docs)
        queries.extend(qs)
        if remaining is not None:
            remaining -= len(docs)
    return Corpus(
        sorted(documents, key=lambda d: d.doc_id), sorted(queries, key=lambda q: q.query_id)
    ).check()


def _sample(records: Records, quota: int | None, rng: random.Random) -> Records:
    """A seeded sample of ``quota`` documents and the queries answerable inside it."""
    documents, queries = records
    if quota is None or quota >= len(documents):
        return documents, queries
    kept = sorted(rng.sample(documents, quota), key=lambda d: d.doc_id)
    ids = {d.doc_id for d in kept}
    return kept, [q for q in queries if all(d in ids for d in q.relevant_doc_ids)]


def _fingerprint(sources: list[str]) -> str:
    """A digest of the installed source files (names, sizes, mtimes) and of the roff renderer."""
    digest = hashlib.sha256()
    digest.update(f"groff={roff.groff_available()}".encode())
    paths: list[Path] = []
    if faq.SOURCE in sources:
        paths.extend(faq.chapter_files())
    if manpages.SOURCE in sources:
        paths.extend(page.path for page in manpages.page_files())
    if policy.SOURCE in sources:
        paths.extend(policy.source_files())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_key(max_docs: int | None, seed: int, sources: list[str]) -> str:
    spec = {
        "version": BUILDER_VERSION,
        "max_docs": max_docs,
        "seed": seed,
        "sources": sources,
        "files": _fingerprint(sources),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _store(corpus: Corpus, target: Path) -> None:
    """Write into a sibling temp dir and rename, so concurrent builders never see a half corpus."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    corpus.save_jsonl(staging)
    try:
        staging.rename(target)
    except OSError:  # another process stored the same corpus first: theirs is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
