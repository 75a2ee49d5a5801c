"""Man pages as labelled documents and queries.

Every page file under ``<man_root>/man<N>/`` (gzip'd roff, English pages only) is rendered to text
(:mod:`serving.eval.roff`). Its NAME line, "gzip, gunzip, zcat - compress or expand files", gives
the query: the description after the dash. The document is the rest of the page without the NAME
section: id ``manpages/man<N>/<file name without .gz>``, title the page name (``gzip``).

Pages are left out when they cannot make a fair, real query:

* aliases (``.so`` pages and symlinks): they are another page under a second name;
* pages whose rendered body is shorter than :data:`MIN_BODY_CHARS`;
* pages whose NAME line has no "name - description" form or whose description is generic
  (:func:`is_generic`);
* pages shipped by CPython (``python*``, ``pydoc*``, ``idle*``, ``2to3*``): the Python
  documentation is reserved for an independent check and must not leak into this corpus.

A "family" (page name up to its first ``-``, ``_``, ``.`` or ``:``, e.g. ``git`` or ``gcloud``) may
contribute at most ``max_per_family`` candidate pages, so one tool that ships thousands of
generated pages (google-cloud-cli ships ~16,000) cannot swamp the corpus.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from serving.eval import roff
from serving.eval.schema import EvalDocument, EvalQuery, SourceMissingError
from serving.eval.text import content_words

SOURCE = "manpages"
DEFAULT_MAN_ROOT = Path("/usr/share/man")
DEFAULT_SECTIONS = ("1", "2", "3", "4", "5", "7", "8")
DEFAULT_MAX_PER_FAMILY = 40
MIN_BODY_CHARS = 300
MIN_DESCRIPTION_WORDS = 2
MAX_DESCRIPTION_WORDS = 30
PACKAGES_HINT = "apt-get install -y manpages manpages-dev groff-base"

_PAGE_FILE = re.compile(r"^(?P<name>.+)\.(?P<section>\d[a-z0-9]*)(?:\.gz)?$", re.IGNORECASE)
_EXCLUDED_NAMES = re.compile(r"^(?:python|pydoc|idle|2to3)", re.IGNORECASE)
_NAME_LINE = re.compile(r"^(?P<names>.+?)\s+(?:\\-|[-\u2212\u2013\u2014]{1,2})\s+(?P<description>.+)$")
_BOX = re.compile(r"[\u2500-\u257f]+")
_FOOTER = re.compile(r"\S+\([0-9a-z]+\)\s*$", re.IGNORECASE)
# help2man boilerplate ("manual page for llvm-rtdyld 14") and placeholder pages say nothing.
_GENERIC = re.compile(r"^(?:(?:manual|man) page for\b|undocumented\b)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PageFile:
    """A man page file: ``name`` and ``section`` come from the file name (``gzip.1.gz``)."""

    path: Path
    name: str
    section: str

    @property
    def doc_id(self) -> str:
        return f"{SOURCE}/{self.path.parent.name}/{self.path.name.removesuffix('.gz')}"

    @property
    def family(self) -> str:
        return re.split(r"[-_.:]", self.name.lower(), maxsplit=1)[0]


@dataclass(frozen=True, slots=True)
class Page:
    """A rendered page: its NAME description (the query) and its document."""

    document: EvalDocument
    description: str


def page_files(
    man_root: Path = DEFAULT_MAN_ROOT, sections: Sequence[str] = DEFAULT_SECTIONS
) -> list[PageFile]:
    """Every regular (non-symlink) page file of ``sections`` that is not excluded, sorted by path.

    :class:`SourceMissingError` when there is none (no man pages installed, or dpkg told to skip
    ``/usr/share/man``, as slim container images do).
    """
    found: list[PageFile] = []
    for section in sections:
        directory = man_root / f"man{section}"
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            match = _PAGE_FILE.match(entry.name)
            if not match or entry.is_symlink() or not entry.is_file():
                continue
            if _EXCLUDED_NAMES.match(match.group("name")):
                continue
            found.append(PageFile(Path(entry.path), match.group("name"), match.group("section")))
    if not found:
        raise SourceMissingError(
            f"no man pages under {man_root}/man{{{','.join(sections)}}}: run `{PACKAGES_HINT}` "
            "(and make sure /etc/dpkg/dpkg.cfg.d/ does not path-exclude /usr/share/man)"
        )
    return sorted(found, key=lambda p: str(p.path))


def candidates(files: Sequence[PageFile], seed: int, max_per_family: int | None) -> list[PageFile]:
    """At most ``max_per_family`` seeded-random pages of each family, all in one seeded random order.

    Capping before shuffling matters: capping a shuffled list would keep the first pages of a
    dominant family, which all sit near the front.
    """
    rng = random.Random(f"{SOURCE}:{seed}")
    families: dict[str, list[PageFile]] = {}
    for page in files:
        families.setdefault(page.family, []).append(page)
    kept: list[PageFile] = []
    for family in sorted(families):
        members = families[family]
        if max_per_family is not None and len(members) > max_per_family:
            members = rng.sample(members, max_per_family)
        kept.extend(members)
    rng.shuffle(kept)
    return kept


def split_page(text: str) -> tuple[str, str] | None:
    """``(NAME line, body)`` of a rendered page, or ``None`` when it has no NAME section.

    Headings are the lines starting at column 0; the page header (before NAME) and the footer
    (last line at column 0 ending in ``name(section)``) are dropped. The NAME line is the first
    paragraph of the NAME section; further NAME paragraphs, rare, stay in the body. The body keeps
    the headings of the other sections; its lines are stripped, table rules (box-drawing
    characters, which groff stretches to the line length) removed and runs of blanks collapsed.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and not lines[-1][:1].isspace() and _FOOTER.search(lines[-1]):
        lines.pop()
    start = next((i for i, line in enumerate(lines) if line.strip() == "NAME"), None)
    if start is None:
        return None
    name_lines: list[str] = []
    body: list[str] = []
    for line in lines[start + 1 :]:
        clean = " ".join(_BOX.sub(" ", line).split())
        if body or (name_lines and not clean) or (clean and not line[:1].isspace()):
            body.append(clean)
        elif clean:
            name_lines.append(clean)
    compact = re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip()
    return " ".join(name_lines), compact


def parse_name_line(line: str) -> str | None:
    """The description of a NAME line ("ls - list directory contents" -> "list directory contents")."""
    match = _NAME_LINE.match(line)
    if not match:
        return None
    return match.group("description").strip().rstrip(".").strip() or None


def is_generic(description: str, page_name: str) -> bool:
    """True when a description cannot serve as a query.

    That is: boilerplate ("manual page for foo 1.2"), or fewer than
    :data:`MIN_DESCRIPTION_WORDS` content words besides the words of the page name ("TCP protocol"
    for ``tcp``, "create pipe" for ``pipe``), or more than :data:`MAX_DESCRIPTION_WORDS` words (a
    NAME section that runs on into prose, not a one-line description).
    """
    if _GENERIC.match(description) or len(description.split()) > MAX_DESCRIPTION_WORDS:
        return True
    # "git-version": both the whole name and its parts ("git", "version") are name words.
    name_words = set(content_words(page_name)) | set(content_words(re.sub(r"[-_.:]+", " ", page_name)))
    return len([w for w in content_words(description) if w not in name_words]) < MIN_DESCRIPTION_WORDS


def read_page(page: PageFile) -> Page | None:
    """Render ``page`` into a :class:`Page`, or ``None`` when a rule of the module excludes it."""
    source = roff.read_source(page.path)
    if roff.is_alias(roff.decode(source[:4096])):
        return None
    parts = split_page(roff.render(source))
    if parts is None:
        return None
    name_line, body = parts
    description = parse_name_line(name_line)
    if description is None or len(body) < MIN_BODY_CHARS or is_generic(description, page.name):
        return None
    return Page(EvalDocument(page.doc_id, page.name, body, SOURCE), description)


def read_pages(files: Sequence[PageFile], workers: int | None = None) -> Iterator[Page | None]:
    """:func:`read_page` over ``files`` in order, rendering in parallel (groff runs as subprocesses)."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        yield from pool.map(read_page, files)


def load_manpages(
    limit: int | None,
    seed: int,
    *,
    man_root: Path = DEFAULT_MAN_ROOT,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    max_per_family: int | None = DEFAULT_MAX_PER_FAMILY,
) -> tuple[list[EvalDocument], list[EvalQuery]]:
    """Up to ``limit`` documents (all when ``None``) and their queries, sorted by id.

    Pages are taken in :func:`candidates` order until ``limit`` are accepted, so a small corpus
    renders only a little more than it keeps. A page whose body repeats an accepted page's body is
    skipped. A description shared by several accepted pages labels none of them (its answer would
    be ambiguous); those pages stay as documents without a query.
    """
    order = candidates(page_files(man_root, sections), seed, max_per_family)
    documents: list[EvalDocument] = []
    descriptions: dict[str, str] = {}
    bodies: set[str] = set()
    # Render in batches a little larger than what is still missing, to stop soon after the limit.
    position = 0
    while position < len(order) and (limit is None or len(documents) < limit):
        missing = len(order) if limit is None else limit - len(documents)
        batch = order[position : position + max(16, missing + missing // 4)]
        position += len(batch)
        for page in read_pages(batch):
            if page is None or page.document.body in bodies:
                continue
            if limit is not None and len(documents) >= limit:
                break
            bodies.add(page.document.body)
            documents.append(page.document)
            descriptions[page.document.doc_id] = page.description
    counts: dict[str, int] = {}
    for text in descriptions.values():
        counts[text.lower()] = counts.get(text.lower(), 0) + 1
    queries = [
        EvalQuery(f"q:{doc_id}", text, [doc_id], SOURCE)
        for doc_id, text in descriptions.items()
        if counts[text.lower()] == 1
    ]
    return sorted(documents, key=lambda d: d.doc_id), sorted(queries, key=lambda q: q.query_id)
