"""Man page source (roff, usually gzip'd) to plain text.

:func:`render` prefers GNU troff (``groff``, Debian package ``groff-base``), which understands every
macro and preprocessor a real page uses; it falls back to :func:`strip_roff`, a small stripper that
knows the common ``man`` macros and escapes and is good enough to read NAME lines and prose.

Both produce the same layout, the one ``man`` prints: section headings (``NAME``, ``SYNOPSIS``...)
start at column 0, everything else is indented. Paragraphs are not wrapped (groff runs with a
very long line length), so a paragraph is one line and no word is hyphenated across lines.
"""

from __future__ import annotations

import functools
import gzip
import re
import shutil
import subprocess
from pathlib import Path

_GROFF_ARGS = ["-t", "-k", "-mandoc", "-Tutf8", "-P-cbou", "-rLL=5000n"]
_GROFF_TIMEOUT_S = 60
_INDENT = " " * 7

# troff special characters (\(xx, \[xx]) that man pages use, as "name:text"; others render as nothing.
_SPECIAL_CHAR_TABLE = (
    "em:\u2014 en:\u2013 bu:\u2022 aq:' dq:\" lq:\u201c rq:\u201d oq:\u2018 cq:\u2019 co:\u00a9 "
    "rg:\u00ae tm:\u2122 hy:- mi:- pl:+ mu:\u00d7 <=:\u2264 >=:\u2265 ->:\u2192 <-:\u2190 ga:` ti:~ "
    "ha:^ rs:\\ dg:\u2020 de:\u00b0 bv:| ba:| or:| sl:/ sq:\u25a1"
)
_SPECIAL_CHARS = dict(pair.split(":", 1) for pair in _SPECIAL_CHAR_TABLE.split())
_ESCAPE = re.compile(
    r"\\(?:"
    r"f(?:\[[^\]]*\]|\(..|.)"  # font change
    r"|s[+-]?(?:\d+|\(\d\d|\[\d+\])"  # size change
    r"|\*(?:\[(?P<str_long>[^\]]*)\]|\((?P<str2>..)|(?P<str1>.))"  # predefined string
    r"|\((?P<chr2>..)|\[(?P<chr_long>[^\]]*)\]"  # special character
    r"|n(?:\[[^\]]*\]|\(..|.)"  # number register
    r"|[kh]'[^']*'|[vwoHSlLbDxXNRZ]'[^']*'"  # motions and other quoted-argument escapes
    r"|(?P<char>.)"  # one-character escapes: \- \e \& \| \^ \  \% \c ...
    r")"
)
_ONE_CHAR = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "'": "'", "`": "`", ".": "."}
# Predefined strings (\*(xx) of the man macros; any other renders as nothing.
_STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122"}


def read_source(path: Path) -> bytes:
    """The raw roff bytes of a man page file, decompressed when it ends in ``.gz``."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def decode(source: bytes) -> str:
    """Decode roff bytes: UTF-8 when valid, else Latin-1 (older pages), never failing."""
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError:
        return source.decode("latin-1")


def is_alias(source: str) -> bool:
    """True when the page only sources another page (``.so man1/other.1``): it has no text of its own."""
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        return stripped.startswith(".so ")
    return False


@functools.cache
def groff_available() -> bool:
    """Whether ``groff`` is on PATH (looked up once per process)."""
    return shutil.which("groff") is not None


def render(source: bytes) -> str:
    """Plain text of a man page: with groff when installed, else :func:`strip_roff`."""
    if groff_available():
        done = subprocess.run(
            ["groff", *_GROFF_ARGS], input=source, capture_output=True, timeout=_GROFF_TIMEOUT_S, check=False
        )
        text = done.stdout.decode("utf-8", errors="replace")
        if done.returncode == 0 and text.strip():
            return text
    return strip_roff(decode(source))


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        groups = match.groupdict()
        if groups["chr2"] or groups["chr_long"]:
            return _SPECIAL_CHARS.get(groups["chr2"] or groups["chr_long"], "")
        string = groups["str_long"] or groups["str2"] or groups["str1"]
        if string:
            return _STRINGS.get(string, "")
        if groups["char"]:
            return _ONE_CHAR.get(groups["char"], "")
        return ""

    return _ESCAPE.sub(replace, text)


def _arguments(rest: str) -> list[str]:
    # An argument is a quoted string or a run of non-blanks where "\ " (escaped space) is not a blank.
    return [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|((?:\\.|\S)+)', rest)]


class _Writer:
    """Fills text into paragraphs (one output line each) the way troff's fill mode does."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.words: list[str] = []
        self.fill = True
        self.tag_pending = False  # after .TP the next line is a tag, set on a line of its own

    def text(self, text: str) -> None:
        if not text:
            return
        if not self.fill:
            self.lines.append(_INDENT + text)
            return
        self.words.append(text)
        if self.tag_pending:
            self.tag_pending = False
            self.flush()

    def flush(self, blank: bool = False) -> None:
        if self.words:
            self.lines.append(_INDENT + " ".join(self.words))
            self.words = []
        if blank and self.lines and self.lines[-1]:
            self.lines.append("")

    def heading(self, text: str) -> None:
        self.flush(blank=True)
        self.lines.append(text)


def strip_roff(source: str) -> str:
    """Plain text from ``man``-macro roff without a formatter.

    Handles comments, ``.SH``/``.SS`` headings, font macros (``.B``, ``.BR`` ...), paragraph
    macros (``.PP``, ``.TP``, ``.IP``), ``.br``/``.sp``, ``.nf``/``.fi`` and the common escapes.
    Every other request is dropped with its arguments. Alias pages (``.so``) are not followed.
    """
    out = _Writer()
    for raw in source.splitlines():
        line = re.sub(r'\\".*$', "", raw)  # comment to end of line
        if line.startswith((".", "'")) and not line[1:].strip():
            continue  # an empty request (what is left of a comment line)
        match = re.match(r"[.']\s*(\S+)\s*(.*)$", line)
        if not match:
            if not line.strip():
                out.flush(blank=True)
            out.text(_unescape(line).strip())
            continue
        request, rest = match.group(1), match.group(2)
        args = [_unescape(a) for a in _arguments(rest)]
        if request == "SH":
            out.heading(" ".join(args).upper())
        elif request == "SS":
            out.heading("   " + " ".join(args))
        elif request in {"B", "I", "SM", "SB"}:
            out.text(" ".join(args))
        elif request in {"BR", "BI", "IB", "RB", "RI", "IR"}:
            out.text("".join(args))
        elif request in {"PP", "P", "LP", "TP", "IP", "sp", "br"}:
            out.flush(blank=request != "br")
            out.tag_pending = request == "TP"
            if request == "IP" and args:
                out.text(args[0])
                out.flush()
        elif request in {"nf", "fi"}:
            out.flush()
            out.fill = request == "fi"
    out.flush()
    return "\n".join(out.lines) + "\n"
