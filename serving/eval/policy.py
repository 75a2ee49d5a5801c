"""The Debian Policy Manual (Debian package ``debian-policy``) as labelled documents and queries.

The package ships the manual's reStructuredText sources (``policy.html/_sources/*.rst.txt``). A
section is a heading line underlined with punctuation; the first adornment character of a file is
its chapter (level 1), the next ones its sections, sub-sections and so on.

* Every section below the chapter is a document: id ``debian-policy/<file>#<n>`` (``n``: the
  section's position in its file), title the chapter's title (never the heading itself, which
  would make retrieval trivial), body the section's own text up to the next heading of any level.
* Its heading is its query when the heading has at least :data:`MIN_QUERY_WORDS` words and no
  other section of the manual has the same heading (an ambiguous label is no label). One-word
  headings (most are control field names such as ``Source``) stay as documents without a query.
* Sections with less than :data:`MIN_BODY_CHARS` characters of text are dropped (and their query).

The markup is reduced to the words a reader sees: roles with an explicit text keep it
(``:ref:`binary control file <s-binarycontrolfiles>``` reads "binary control file"); a bare
``:ref:`label``` is removed, since Sphinx renders it as the *other* section's heading, which would
let a lexical retriever match the wrong section on the exact query text (as the FAQ's quoted
cross-references, :mod:`serving.eval.faq`). Labels, index entries and footnote markers are dropped;
literal blocks are kept. The upgrading checklist (a changelog) and the index page are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from serving.eval.schema import EvalDocument, EvalQuery, SourceMissingError

SOURCE = "debian-policy"
DEFAULT_POLICY_DIR = Path("/usr/share/doc/debian-policy/policy.html/_sources")
EXCLUDED = frozenset({"index.rst.txt", "upgrading-checklist.rst.txt"})
MIN_BODY_CHARS = 80
MIN_QUERY_WORDS = 2
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")
_ROLE_WITH_TEXT = re.compile(r":[a-z]+:`([^`<]+?)\s*<[^>`]+>`")
_BARE_ROLE = re.compile(r":[a-z]+:`[^`]+`")
_LITERAL = re.compile(r"``([^`]+)``")
_LINK = re.compile(r"`([^`<]+?)\s*(?:<[^>]+>)?`_+")
_EMPHASIS = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")
_FOOTNOTE_REF = re.compile(r"\s*\[#\]_")
_DIRECTIVE = re.compile(r"^\.\.\s+(?:_[^:]+:|\|[^|]+\|\s+replace::.*)?\s*$")


@dataclass(frozen=True, slots=True)
class Section:
    """One heading of a file and the text up to the next heading. ``level`` 1 is the chapter."""

    level: int
    heading: str
    text: str


def inline_text(text: str) -> str:
    """reStructuredText inline markup reduced to the words a reader sees (module docstring)."""
    text = _ROLE_WITH_TEXT.sub(r"\1", text)
    text = _BARE_ROLE.sub("", text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _FOOTNOTE_REF.sub("", text)
    return re.sub(r"[ \t]+([,.;:)])", r"\1", text)


def parse_sections(source: str) -> list[Section]:
    """The sections of one ``.rst`` source in document order (text before the first heading dropped)."""
    lines = source.splitlines()
    levels: dict[str, int] = {}
    heads: list[tuple[int, int, str]] = []  # (line index of the heading, level, heading)
    for i in range(len(lines) - 1):
        title, under = lines[i].rstrip(), lines[i + 1].rstrip()
        match = _ADORNMENT.match(under)
        if not title.strip() or title.startswith(" ") or match is None or len(under) < len(title.strip()):
            continue
        if i > 0 and _ADORNMENT.match(lines[i - 1].rstrip()):
            continue  # an overlined title: its underline is handled like the plain ones below
        level = levels.setdefault(match.group(1), len(levels) + 1)
        heads.append((i, level, " ".join(inline_text(title).split())))
    sections = []
    for n, (start, level, heading) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        sections.append(Section(level, heading, _body(lines[start + 2 : end])))
    return sections


def _body(lines: list[str]) -> str:
    """A section's lines as plain paragraphs: labels, index entries and directive headers dropped
    (an index entry's indented lines too), a footnote's text kept, blank runs collapsed."""
    out: list[str] = []
    in_index = False
    for line in lines:
        stripped = line.strip()
        if in_index and (line.startswith(" ") or not stripped):
            in_index = bool(stripped)  # a blank line ends the entry's block
            continue
        in_index = False
        if stripped.startswith(".. index::"):
            in_index = True
            continue
        if stripped.startswith(".. [#]"):
            out.append(inline_text(stripped.removeprefix(".. [#]").strip()))
            continue
        if _DIRECTIVE.match(line) or (stripped.startswith(".. ") and stripped.endswith("::")):
            continue  # a label, a substitution, or a directive header (its indented body stays)
        out.append(inline_text(line.rstrip()))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def source_files(policy_dir: Path = DEFAULT_POLICY_DIR) -> list[Path]:
    """The manual's chapter and appendix sources, sorted; :class:`SourceMissingError` if absent."""
    files = sorted(p for p in policy_dir.glob("*.rst.txt") if p.name not in EXCLUDED)
    if not files:
        raise SourceMissingError(
            f"the Debian Policy Manual is not installed (no *.rst.txt under {policy_dir}): "
            "run `apt-get install -y debian-policy`"
        )
    return files


def load_policy(policy_dir: Path = DEFAULT_POLICY_DIR) -> tuple[list[EvalDocument], list[EvalQuery]]:
    """Every Policy document and query (module docstring for the rules), sorted by id."""
    found: list[tuple[EvalDocument, str]] = []
    for path in source_files(policy_dir):
        sections = parse_sections(path.read_text(encoding="utf-8"))
        if not sections or sections[0].level != 1:
            continue
        chapter = path.name.removesuffix(".rst.txt")
        title = sections[0].heading
        for n, section in enumerate(sections[1:], start=1):
            if len(section.text) >= MIN_BODY_CHARS:
                doc = EvalDocument(f"{SOURCE}/{chapter}#{n}", title, section.text, SOURCE)
                found.append((doc, section.heading))
    counts: dict[str, int] = {}
    for _, heading in found:
        counts[heading.casefold()] = counts.get(heading.casefold(), 0) + 1
    documents = [doc for doc, _ in found]
    queries = [
        EvalQuery(f"q:{doc.doc_id}", heading, [doc.doc_id], SOURCE)
        for doc, heading in found
        if counts[heading.casefold()] == 1 and len(heading.split()) >= MIN_QUERY_WORDS
    ]
    return sorted(documents, key=lambda d: d.doc_id), sorted(queries, key=lambda q: q.query_id)
