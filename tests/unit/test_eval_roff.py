"""The roff fallback stripper and alias detection (groff itself is exercised by the integration test)."""

from __future__ import annotations

import gzip
from pathlib import Path

from serving.eval.roff import decode, is_alias, read_source, strip_roff

PAGE = r""".\" A comment line that must vanish
.TH FROB 1 "2024" "frob 1.0"
.SH NAME
frob \- twiddle the \fBbits\fR of a file
.SH SYNOPSIS
.B frob
.RI [ options ] " file"
.SH DESCRIPTION
.B frob
reads a file
and twiddles it.\" trailing comment
.PP
Second paragraph with \(lqquotes\(rq and a \e backslash.
.TP
.B \-v
Be verbose.
.nf
line one
line two
.fi
.SS Sub heading
Text\~here.
"""


def test_strip_roff_renders_headings_at_column_zero_and_fills_paragraphs() -> None:
    lines = strip_roff(PAGE).splitlines()
    assert lines[0] == "NAME"
    assert lines[1] == "       frob - twiddle the bits of a file"
    assert "SYNOPSIS" in lines and "DESCRIPTION" in lines
    assert "       frob reads a file and twiddles it." in lines
    assert "       Second paragraph with \u201cquotes\u201d and a \\ backslash." in lines


def test_strip_roff_handles_tags_no_fill_and_font_alternation() -> None:
    lines = [line.strip() for line in strip_roff(PAGE).splitlines()]
    assert "frob [options] file" in lines  # .RI joins its arguments; quotes group words
    assert lines.index("-v") + 1 == lines.index("Be verbose.")  # the .TP tag is a line of its own
    assert lines.index("line one") + 1 == lines.index("line two")  # .nf keeps lines
    assert "Sub heading" in lines and "Text here." in lines


def test_strip_roff_drops_comments_and_unknown_requests() -> None:
    text = strip_roff(PAGE)
    assert "comment" not in text
    assert ".TH" not in text and "2024" not in text


def test_is_alias_detects_so_pages_after_comments() -> None:
    assert is_alias('.\\" generated\n.so man3/printf.3\n')
    assert not is_alias(PAGE)


def test_read_source_decompresses_and_decode_falls_back_to_latin1(tmp_path: Path) -> None:
    page = tmp_path / "frob.1.gz"
    page.write_bytes(gzip.compress(PAGE.encode()))
    assert read_source(page) == PAGE.encode()
    assert decode("caf\xe9".encode("latin-1")) == "caf\xe9"
    assert decode("caf\xe9".encode()) == "caf\xe9"


def test_strip_roff_translates_special_characters_strings_and_drops_font_changes() -> None:
    source = r"a \(<= b \[->] c \(rs d \*(lqq\*(rq \fIital\fP \s-1small\s0 \(zz\&."
    assert strip_roff(source) == "       a \u2264 b \u2192 c \\ d \u201cq\u201d ital small .\n"
