"""The Debian FAQ (Debian package ``debian-faq``) as labelled documents and queries.

The package ships one DocBook-generated XHTML file per chapter (``<chapter>.en.html``). Every
section heading of the form "7.3. How do I ...?" (any heading containing a '?') is a question:

* its query is the heading text without the section number;
* its relevant document is that section: id ``debian-faq/<chapter>#<anchor>``, title the chapter
  title (never the question, which would make retrieval trivial), body the section's text without
  the heading. Sub-sections that are not questions themselves (e.g. "8.1.1. dpkg" under "8.1. What
  programs does Debian provide...?") are part of the answer and join their nearest question
  ancestor's body, headed by their own title. Nested questions are documents of their own.

Sections that are not under any question ("15.1. Hardening the system") become documents without
a query: realistic distractors. Navigation, tables of contents and footnotes are dropped.

Cross-references in the text read 'see Section 7.6, “What is a Debian preinst ... script?”': they
quote *other* questions verbatim, which would let a lexical retriever match the wrong section on
the exact query text. Their quoted titles are removed ('see Section 7.6').
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from serving.eval.schema import EvalDocument, EvalQuery, SourceMissingError

SOURCE = "debian-faq"
DEFAULT_FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
_SKIPPED_DIVS = frozenset({"toc", "navheader", "navfooter", "footnotes"})
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "dt", "dd", "tr", "pre", "table", "ul", "ol", "dl", "blockquote"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_NUMBERING = re.compile(r"^(?:Chapter\s+)?\d+(?:\.\d+)*\.?\s+")
_XREF_TITLE = re.compile(r"((?:Section|Chapter)\s+\d+(?:\.\d+)*),\s*“[^”]*”")
# Drop FAQ sections whose answer is shorter than this: too little text to retrieve on.
MIN_BODY_CHARS = 80


@dataclass(slots=True)
class Section:
    """One heading of a chapter and the text up to the next heading. ``level`` 1 is the chapter."""

    level: int
    anchor: str
    heading: str
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return _XREF_TITLE.sub(r"\1", _tidy("".join(self.parts)))

    @property
    def is_question(self) -> bool:
        return "?" in self.heading


class _ChapterParser(HTMLParser):
    """Flattens a DocBook XHTML chapter into its sections, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._div_depth = 0
        self._skip_from: int | None = None  # div depth at which a skipped div opened
        self._in_head = False
        self._pre = 0
        self._heading: Section | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "head":
            self._in_head = True
        elif tag == "div":
            self._div_depth += 1
            classes = set((attr.get("class") or "").split())
            if self._skip_from is None and classes & _SKIPPED_DIVS:
                self._skip_from = self._div_depth
        elif tag in _HEADINGS and not self._skipping:
            self._heading = Section(_HEADINGS[tag], "", "")
        elif tag == "a" and self._heading is not None and not self._heading.anchor:
            self._heading.anchor = attr.get("id") or ""
        elif tag == "pre":
            self._pre += 1
        if tag in _BLOCK_TAGS:
            self._emit("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self._in_head = False
        elif tag == "div":
            if self._skip_from == self._div_depth:
                self._skip_from = None
            self._div_depth -= 1
        elif tag in _HEADINGS and self._heading is not None:
            section, self._heading = self._heading, None
            section.heading = _NUMBERING.sub("", " ".join("".join(section.parts).split()))
            section.parts = []
            self.sections.append(section)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _BLOCK_TAGS:
            self._emit("\n\n")

    def handle_data(self, data: str) -> None:
        self._emit(data if self._pre else re.sub(r"\s+", " ", data))

    @property
    def _skipping(self) -> bool:
        return self._in_head or self._skip_from is not None

    def _emit(self, text: str) -> None:
        if self._skipping:
            return
        if self._heading is not None:
            self._heading.parts.append(text)
        elif self.sections:
            self.sections[-1].parts.append(text)


def _tidy(text: str) -> str:
    """Strip lines and keep at most one blank line between paragraphs.

    Lines indented by two or more spaces keep their indentation: outside ``<pre>`` the parser has
    already collapsed whitespace runs, so only preformatted text can start that way.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1]):
            out.append(line if line.startswith("  ") else line.strip())
    return "\n".join(out).strip()


def parse_chapter(html: str) -> list[Section]:
    """The sections of one chapter file, the chapter heading (level 1) first."""
    parser = _ChapterParser()
    parser.feed(html)
    parser.close()
    return parser.sections


def chapter_files(faq_dir: Path = DEFAULT_FAQ_DIR) -> list[Path]:
    """The English chapter files, sorted; :class:`SourceMissingError` when the FAQ is not installed."""
    files = sorted(p for p in faq_dir.glob("*.en.html") if p.name != "index.en.html")
    if not files:
        raise SourceMissingError(
            f"the Debian FAQ is not installed (no *.en.html under {faq_dir}): "
            "run `apt-get install -y debian-faq`"
        )
    return files


def chapter_records(chapter: str, sections: list[Section]) -> tuple[list[EvalDocument], list[EvalQuery]]:
    """Documents and queries of one chapter (see the module docstring for the rules)."""
    if not sections or sections[0].level != 1:
        return [], []
    title = sections[0].heading
    # owner[i]: index of the section whose document absorbs section i.
    owner: dict[int, int] = {}
    stack: list[int] = []  # indices of the open ancestors of the current section
    for i, section in enumerate(sections[1:], start=1):
        while stack and sections[stack[-1]].level >= section.level:
            stack.pop()
        ancestor_question = next((j for j in reversed(stack) if sections[j].is_question), None)
        owner[i] = i if section.is_question or ancestor_question is None else ancestor_question
        stack.append(i)
    bodies: dict[int, list[str]] = {}
    for i, target in owner.items():
        text = sections[i].text
        if i == target:
            bodies[i] = [text]
        else:
            bodies[target].append(f"{sections[i].heading}\n\n{text}" if text else sections[i].heading)
    documents: list[EvalDocument] = []
    queries: list[EvalQuery] = []
    for i, parts in sorted(bodies.items()):
        body = "\n\n".join(p for p in parts if p)
        if len(body) < MIN_BODY_CHARS:
            continue
        doc_id = f"{SOURCE}/{chapter}#{sections[i].anchor}"
        documents.append(EvalDocument(doc_id, title, body, SOURCE))
        if sections[i].is_question:
            queries.append(EvalQuery(f"q:{doc_id}", sections[i].heading, [doc_id], SOURCE))
    return documents, queries


def load_faq(faq_dir: Path = DEFAULT_FAQ_DIR) -> tuple[list[EvalDocument], list[EvalQuery]]:
    """Every FAQ document and question, sorted by id."""
    documents: list[EvalDocument] = []
    queries: list[EvalQuery] = []
    for path in chapter_files(faq_dir):
        chapter = path.name.removesuffix(".en.html")
        docs, qs = chapter_records(chapter, parse_chapter(path.read_text(encoding="utf-8")))
        documents.extend(docs)
        queries.extend(qs)
    return sorted(documents, key=lambda d: d.doc_id), sorted(queries, key=lambda q: q.query_id)
