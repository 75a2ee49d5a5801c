"""Man page selection and labelling rules, on rendered text and a temporary man tree."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from serving.eval.manpages import (
    PageFile,
    candidates,
    is_generic,
    load_manpages,
    page_files,
    parse_name_line,
    split_page,
)
from serving.eval.schema import SourceMissingError

RENDERED = """FROB(1)                      General Commands Manual                      FROB(1)

NAME
       frob, unfrob - twiddle the
       bits of a file

SYNOPSIS
       frob [-v] file

DESCRIPTION
       frob   reads a file.
       ┌──────────┬────────┐
       │Interface │ Value  │
       └──────────┴────────┘

frob 1.0                         2024-01-01                         FROB(1)
"""


def test_split_page_separates_the_name_line_and_drops_header_footer_and_table_rules() -> None:
    parts = split_page(RENDERED)
    assert parts is not None
    name_line, body = parts
    assert name_line == "frob, unfrob - twiddle the bits of a file"
    assert body.startswith("SYNOPSIS\nfrob [-v] file\n\nDESCRIPTION\nfrob reads a file.")
    assert "Interface Value" in body
    assert "FROB(1)" not in body and "NAME" not in body and "─" not in body


def test_split_page_without_name_section_is_none() -> None:
    assert split_page("SYNOPSIS\n       frob\n") is None


@pytest.mark.parametrize(
    ("line", "description"),
    [
        ("ls - list directory contents", "list directory contents"),
        ("pow, powf, powl \u2212 power functions.", "power functions"),
        ("git-add -- Add file contents to the index", "Add file contents to the index"),
        ("a-b-c without a separated dash", None),
    ],
)
def test_parse_name_line_takes_the_text_after_the_dash(line: str, description: str | None) -> None:
    assert parse_name_line(line) == description


@pytest.mark.parametrize(
    ("description", "name", "generic"),
    [
        ("list directory contents", "ls", False),
        ("execute program", "execve", False),
        ("TCP protocol", "tcp", True),  # one word besides the name
        ("create pipe", "pipe", True),
        ("the frob command", "frob", True),
        ("manual page for llvm-rtdyld 14", "llvm-rtdyld-14", True),
        (" ".join(["word"] * 31), "x", True),  # a NAME section running on into prose
    ],
)
def test_is_generic(description: str, name: str, generic: bool) -> None:
    assert is_generic(description, name) is generic


def _files(names: list[str]) -> list[PageFile]:
    return [PageFile(Path(f"/m/man1/{n}.1.gz"), n, "1") for n in names]


def test_candidates_cap_each_family_and_are_seeded() -> None:
    files = _files([f"gcloud_cmd{i}" for i in range(50)] + ["ls", "git-add", "git-log", "pg_dump"])
    order = candidates(files, seed=3, max_per_family=2)
    assert len(order) == 6
    assert sum(p.family == "gcloud" for p in order) == 2 and sum(p.family == "git" for p in order) == 2
    assert candidates(files, seed=3, max_per_family=2) == order
    assert len({tuple(p.name for p in candidates(files, seed=s, max_per_family=2)) for s in range(8)}) > 1
    assert len(candidates(files, seed=0, max_per_family=None)) == len(files)


FILLER = "This paragraph repeats so the page body is long enough to be kept as a document. " * 5


def _write_page(root: Path, section: str, name: str, description: str, body: str = FILLER) -> Path:
    path = root / f"man{section}" / f"{name}.{section}.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    source = f'.TH {name.upper()} {section} "2024" "test"\n.SH NAME\n{name} \\- {description}\n'
    path.write_bytes(gzip.compress(f"{source}.SH DESCRIPTION\n{name} {body}\n".encode()))
    return path


@pytest.fixture
def man_root(tmp_path: Path) -> Path:
    root = tmp_path / "man"
    _write_page(root, "1", "frob", "twiddle the bits of a file")
    _write_page(root, "1", "blat", "flatten a directory tree")
    _write_page(root, "8", "mountd", "serve mount requests")
    _write_page(root, "8", "umountd", "serve mount requests")  # same description: ambiguous
    _write_page(root, "1", "tiny", "a page that is much too short", body="Short.")
    _write_page(root, "1", "python3.11", "an interactive high-level object-oriented language")
    alias = root / "man1" / "unfrob.1.gz"
    alias.write_bytes(gzip.compress(b".so man1/frob.1\n"))
    (root / "man1" / "frobnicate.1.gz").symlink_to(root / "man1" / "frob.1.gz")
    return root


def test_page_files_skip_symlinks_and_python_pages(man_root: Path) -> None:
    names = [p.name for p in page_files(man_root, sections=("1", "8"))]
    assert names == ["blat", "frob", "tiny", "unfrob", "mountd", "umountd"]


def test_load_manpages_labels_unambiguous_descriptions_only(man_root: Path) -> None:
    documents, queries = load_manpages(None, seed=0, man_root=man_root, sections=("1", "8"))
    assert [d.doc_id for d in documents] == [
        "manpages/man1/blat.1",
        "manpages/man1/frob.1",
        "manpages/man8/mountd.8",
        "manpages/man8/umountd.8",
    ]
    assert {q.text: q.relevant_doc_ids for q in queries} == {
        "flatten a directory tree": ["manpages/man1/blat.1"],
        "twiddle the bits of a file": ["manpages/man1/frob.1"],
    }
    frob = documents[1]
    assert frob.title == "frob" and frob.source == "manpages"
    assert "twiddle" not in frob.body and frob.body.startswith("DESCRIPTION")


def test_load_manpages_stops_at_the_limit(man_root: Path) -> None:
    documents, _ = load_manpages(2, seed=0, man_root=man_root, sections=("1", "8"))
    assert len(documents) == 2


def test_missing_man_pages_name_the_packages(tmp_path: Path) -> None:
    with pytest.raises(SourceMissingError, match="apt-get install -y manpages manpages-dev groff-base"):
        page_files(tmp_path)
