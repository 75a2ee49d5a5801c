"""Text cleaning applied to a document body before it is chunked and embedded.

:func:`clean_text` turns HTML, Markdown or plain text into plain prose: Unicode normalised, markup
stripped, boilerplate lines dropped, whitespace tidied, paragraphs (blank-line separated) kept.

Contracts of :func:`clean_text`:

* pure and deterministic: the output depends on the input string only;
* idempotent: ``clean_text(clean_text(x)) == clean_text(x)``. Markup can be nested in ways one pass
  cannot see (``&amp;lt;b&amp;gt;`` only becomes a tag once its entities are decoded), so the steps
  are repeated until the text stops changing; real documents settle after one pass plus the check;
* total: it never raises, whatever the input (lone surrogates included).

The individual steps are public so that callers (and tests) can use them on their own. They are
pure too, but only :func:`clean_text` promises idempotence: a step can reveal markup that another
step, or its own next run, removes.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Final

__all__ = [
    "clean_text",
    "normalise_unicode",
    "normalise_whitespace",
    "remove_boilerplate",
    "strip_html",
    "strip_markdown",
]

# Far more passes than any real input needs (one plus the check); the cap only bounds adversarial
# inputs, for which the last pass is returned.
_MAX_PASSES: Final = 8


def clean_text(text: str) -> str:
    """Plain, tidy text from HTML, Markdown or plain ``text``, ready for chunking.

    A pass runs :func:`normalise_unicode`, :func:`strip_html`, :func:`strip_markdown`,
    :func:`remove_boilerplate` and :func:`normalise_whitespace`, in that order; passes repeat until
    the text stops changing (see the module docstring for why and for the contract).
    """
    current = text
    for _ in range(_MAX_PASSES):
        cleaned = _clean_once(current)
        if cleaned == current:
            break
        current = cleaned
    return current


def _clean_once(text: str) -> str:
    text = normalise_unicode(text)
    text = strip_html(text)
    text = strip_markdown(text)
    text = remove_boilerplate(text)
    return normalise_whitespace(text)


# --- Unicode ----------------------------------------------------------------------------------------

_LINE_BREAKS: Final = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
# C0/C1 controls except \t and \n (handled separately), lone surrogates (not encodable as UTF-8), and
# invisible format characters that only hint at layout. ZWJ/ZWNJ are kept: they change how emoji and
# several scripts (Arabic, Persian, Indic) render and read.
_INVISIBLE: Final = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)


def normalise_unicode(text: str) -> str:
    """NFKC-normalise ``text``, unify line breaks to ``\\n``, turn tabs into spaces, drop controls.

    Line breaks: CRLF, CR, VT, FF, NEL, LS and PS become ``\\n``. Removed: control characters other
    than ``\\n``, lone surrogates, soft hyphens, zero-width spaces, word joiners, BOMs and bidi
    controls. NFKC also folds compatibility forms (full-width letters, ligatures, NBSP) to their
    plain equivalents, so later steps see ``<p>`` and ``#`` however they were typed.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = _INVISIBLE.sub("", text.replace("\t", " "))
    # NFKC last: removing a control between a letter and a combining mark can create a new
    # composition, and NFKC never produces the characters removed above.
    return unicodedata.normalize("NFKC", text)


# --- HTML -------------------------------------------------------------------------------------------

# Tags are only recognised by name, and attributes only as ``name=value`` or a known boolean
# attribute, so that prose and code such as "if a<b and c>d", "Vec<T>" or "<user@example.com>"
# survive. Attribute values may not contain angle brackets: that keeps every match local.
_ATTRIBUTE: Final = (
    r"""\s+(?:[^\s"'<>=/]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>=`]+)"""
    r"|(?:async|autofocus|autoplay|checked|controls|default|defer|disabled|hidden|loop|multiple|muted"
    r"|nomodule|novalidate|open|readonly|required|reversed|selected)(?![^\s/>]))"
)
_ATTRIBUTES: Final = rf"(?:{_ATTRIBUTE})*\s*/?"
# Block-level elements, by the break they stand for: a paragraph break around sections and
# paragraphs, a line break before list items and rows (their closing tag adds nothing, so a list
# stays one paragraph), a space between table cells.
_PARAGRAPH_TAGS: Final = (
    "address|article|aside|blockquote|caption|details|dl|div|fieldset|figcaption|figure|footer|form|"
    "h[1-6]|header|hr|main|nav|ol|p|pre|section|table|tbody|tfoot|thead|ul"
)
_LINE_TAGS: Final = "br|dd|dt|li|summary|tr"
_CELL_TAGS: Final = "td|th"
_INLINE_TAGS: Final = (
    "a|abbr|acronym|b|bdi|bdo|big|body|button|center|cite|code|col|colgroup|data|del|dfn|em|"
    "embed|font|head|html|i|iframe|img|input|ins|kbd|label|legend|link|mark|meta|noscript|object|"
    "option|picture|q|rp|rt|ruby|s|samp|select|small|source|span|strike|strong|sub|sup|svg|"
    "template|textarea|time|title|tt|u|var|video|audio|wbr"
)
# Whole elements whose content is never prose.
_DROPPED_ELEMENTS: Final = re.compile(
    r"<(script|style|noscript|template|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_COMMENT: Final = re.compile(r"<!--.*?-->", re.DOTALL)
_DECLARATION: Final = re.compile(r"<![A-Za-z][^<>]*>|<\?[^<>]*\?>")
_PARAGRAPH_TAG: Final = re.compile(rf"</?(?:{_PARAGRAPH_TAGS})\b{_ATTRIBUTES}>", re.IGNORECASE)
_LINE_OPENING_TAG: Final = re.compile(rf"<(?:{_LINE_TAGS})\b{_ATTRIBUTES}>", re.IGNORECASE)
_LINE_CLOSING_TAG: Final = re.compile(rf"</(?:{_LINE_TAGS})\s*>", re.IGNORECASE)
_CELL_TAG: Final = re.compile(rf"</?(?:{_CELL_TAGS})\b{_ATTRIBUTES}>", re.IGNORECASE)
_INLINE_TAG: Final = re.compile(
    rf"</?(?:(?:{_INLINE_TAGS})\b|[a-z][a-z0-9]*-[a-z0-9-]*){_ATTRIBUTES}>", re.IGNORECASE
)


def strip_html(text: str) -> str:
    """Remove HTML markup from ``text``, keeping its visible text.

    ``<script>``, ``<style>``, ``<noscript>``, ``<template>`` and ``<head>`` elements are dropped with
    their content; comments and ``<!DOCTYPE>``/``<?xml?>`` declarations are dropped; block-level tags
    become breaks (p, div, h1-h6, ul, table, ...: a paragraph break; br, li, tr, ...: a line break;
    td/th: a space); other known tags and custom elements (names with a hyphen) are removed;
    character references are then decoded until none is left (``&amp;amp;`` -> ``&``). Unknown
    ``<words>`` are kept, since they are usually prose or code.
    """
    text = _DROPPED_ELEMENTS.sub("", text)
    text = _COMMENT.sub("", text)
    text = _DECLARATION.sub("", text)
    text = _PARAGRAPH_TAG.sub("\n\n", text)
    text = _LINE_OPENING_TAG.sub("\n", text)
    text = _LINE_CLOSING_TAG.sub("", text)
    text = _CELL_TAG.sub(" ", text)
    text = _INLINE_TAG.sub("", text)
    # Each decoding shortens the text, so this loop ends.
    while (decoded := html.unescape(text)) != text:
        text = decoded
    return text


# --- Markdown ---------------------------------------------------------------------------------------

# A backtick fence's info string cannot contain backticks (CommonMark), which keeps "```x```" on one
# line (inline code) from being taken for a fence.
_FENCE_LINE: Final = re.compile(r"[ \t]*(?:`{3,}[^`]*|~{3,}.*)")
_RULE_LINE: Final = re.compile(r"[ \t]*(?:[-*_=][ \t]*){3,}")
_TABLE_SEPARATOR: Final = re.compile(r"(?=.*\|)(?=.*-)[ \t|:-]+")
_REFERENCE_DEFINITION: Final = re.compile(r"[ \t]{0,3}\[[^\]]+\]:[ \t]+\S.*")
# Any run of block prefixes, in any order: blockquote markers, bullets, heading hashes, task boxes.
# A bullet or heading needs a following space, so "#hashtag", "-5" and "*args" are kept; numbered
# list markers are content (they carry order) and are kept too.
_LINE_PREFIX: Final = re.compile(
    r"(?:[ \t]*(?:>|[-*+•](?=[ \t])|#{1,6}(?=[ \t]|$)|\[[ xX]\](?=[ \t])))+[ \t]*"
)
_CLOSING_HASHES: Final = re.compile(r"[ \t]+#+[ \t]*$")
_URL: Final = r"""(?:[^()\s]|\([^()\s]*\))*(?:\s+(?:"[^"\n]*"|'[^'\n]*'))?\s*"""
_IMAGE: Final = re.compile(rf"!\[([^\]\n]*)\]\({_URL}\)")
_LINK: Final = re.compile(rf"\[([^\]\n]*)\]\({_URL}\)")
_REFERENCE_LINK: Final = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_AUTOLINK: Final = re.compile(r"<((?:https?|ftp)://[^\s<>]+|mailto:[^\s<>]+)>", re.IGNORECASE)
_INLINE_CODE: Final = re.compile(r"(?<!`)(`+)(?!`)([^\n]+?)(?<!`)\1(?!`)")
# Emphasis must be flanked by non-word characters and hug its content, so arithmetic ("a * b"),
# globs, "*args, **kwargs" and snake_case names are left alone.
_STRONG_STAR: Final = re.compile(r"(?<![\w*\\])\*\*(?=\S)([^\n]+?)(?<=\S)\*\*(?![\w*])")
_EM_STAR: Final = re.compile(r"(?<![\w*\\])\*(?![\s*])([^*\n]+?)(?<![\s\\])\*(?![\w*])")
# Dunder names (__init__) are far more common in technical text than one-word bold, so a
# double-underscore span whose content is a bare identifier is kept.
_STRONG_UNDERSCORE: Final = re.compile(r"(?<![\w\\])__(?!\w+__(?!\w))(?=\S)([^\n]+?)(?<=\S)__(?!\w)")
_EM_UNDERSCORE: Final = re.compile(r"(?<![\w\\])_(?![\s_])([^_\n]+?)(?<![\s\\])_(?!\w)")
_STRIKETHROUGH: Final = re.compile(r"~~(?=\S)([^\n]+?)(?<=\S)~~")
_UNESCAPED_PIPE: Final = re.compile(r"(?<!\\)\|")
# In the order applied: (pattern, a substring every match contains, replacement).
_INLINE_MARKUP: Final = (
    (_IMAGE, "](", r"\1"),
    (_LINK, "](", r"\1"),
    (_REFERENCE_LINK, "][", r"\1"),
    (_AUTOLINK, "<", r"\1"),
    (_INLINE_CODE, "`", r"\2"),
    (_STRONG_STAR, "**", r"\1"),
    (_EM_STAR, "*", r"\1"),
    (_STRONG_UNDERSCORE, "__", r"\1"),
    (_EM_UNDERSCORE, "_", r"\1"),
    (_STRIKETHROUGH, "~~", r"\1"),
)


def strip_markdown(text: str) -> str:
    """Remove Markdown markup from ``text``, keeping the words it decorates.

    Removed: heading hashes (ATX and closing), setext underlines and horizontal rules, blockquote
    ``>`` markers, ``-``/``*``/``+`` bullets and task boxes, code fences (the code lines are kept),
    inline-code backticks, ``*``/``_`` emphasis and ``~~`` strikethrough, table pipes and separator
    rows, link reference definitions. Links ``[text](url)`` and ``[text][ref]`` become ``text``,
    images become their alt text, autolinks ``<url>`` become ``url``.

    Kept on purpose: numbered-list numbers, ``#hashtags``, intraword ``*``/``_`` (``a*b``,
    ``snake_case``), dunder names, backslash escapes (unescaping them would create new markup).
    """
    text = _strip_block_markup(text)
    for pattern, marker, keep in _INLINE_MARKUP:
        # Each pattern needs its marker; most texts lack most markers, and a substring test is far
        # cheaper than a scan with lookbehinds at every position (same result either way).
        if marker in text:
            text = pattern.sub(keep, text)
    return text


def _strip_block_markup(text: str) -> str:
    """Line-level Markdown: fences, rules, reference definitions, block prefixes and table pipes.

    Removed lines become empty lines, so the paragraph structure around them survives; only a
    table's separator row disappears entirely.
    """
    lines = []
    for line in text.split("\n"):
        if _TABLE_SEPARATOR.fullmatch(line):
            continue  # a table's header and body stay one block
        if any(p.fullmatch(line) for p in (_FENCE_LINE, _RULE_LINE, _REFERENCE_DEFINITION)):
            line = ""
        elif prefix := _LINE_PREFIX.match(line):
            rest = line[prefix.end() :]
            line = _CLOSING_HASHES.sub("", rest) if "#" in prefix.group(0) else rest
        lines.append(line)
    return _strip_table_pipes(lines)


def _strip_table_pipes(lines: list[str]) -> str:
    """Join ``lines``, replacing the cell pipes of table rows with spaces.

    A table row is a line that starts and ends with ``|``, or a line with a pipe next to such a row
    (GFM allows rows without outer pipes once a table has started). Pipes in ordinary prose
    (``cmd1 | cmd2``) are left alone.
    """
    is_row = [_is_piped_row(line) for line in lines]
    in_table = list(is_row)
    for i, line in enumerate(lines):
        if not in_table[i] and "|" in line:
            in_table[i] = (i > 0 and in_table[i - 1]) or (i + 1 < len(lines) and is_row[i + 1])
    return "\n".join(
        _UNESCAPED_PIPE.sub(" ", line) if row else line for line, row in zip(lines, in_table, strict=True)
    )


def _is_piped_row(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 2 and stripped.startswith("|") and stripped.endswith("|")


# --- Boilerplate ------------------------------------------------------------------------------------

# Lines made only of one of these are dropped. Each pattern must match the whole line (trailing
# punctuation aside), so a sentence that merely mentions cookies or copyright is never touched.
_BOILERPLATE: Final = (
    r"(?:click|tap) here to (?:subscribe|unsubscribe|sign up|register|read more|learn more)",
    r"(?:subscribe|sign up) (?:to|for) (?:our|the|my) (?:newsletter|mailing list)",
    r"(?:(?:©|\(c\)|copyright)\s*)?(?:\d{4}(?:\s*[-–]\s*\d{4})?\s*)?[\w .,&'-]{0,80}?all rights reserved",
    # Without "all rights reserved" only the symbol marks a notice: "Copyright 1999 was..." is prose.
    r"(?:copyright\s*)?(?:©|\(c\))\s*\d{4}(?:\s*[-–]\s*\d{4})?[\w .,&'-]{0,60}",
    r"cookie (?:policy|settings|preferences|notice)",
    r"(?:accept|reject|manage) (?:all )?cookies",
    r"share (?:this|on)(?: (?:article|post|page|story))?(?: on (?:facebook|twitter|x|linkedin|email))?",
    r"(?:follow|find) us on (?:facebook|twitter|x|linkedin|instagram|youtube|mastodon)",
    r"skip to (?:the )?(?:main )?(?:content|navigation)",
    r"back to top",
    r"advertisement",
)
# Navigation links, dropped only when a line is a list of several of them ("Privacy policy | Terms
# of use"): alone, such a line may be the title of a real document.
_NAVIGATION: Final = (
    r"privacy(?: policy)?",
    r"terms(?: of (?:use|service)| (?:and|&) conditions)?",
    r"contact(?: us)?",
    r"about(?: us)?",
    r"home",
    r"sitemap",
    r"careers",
    r"help",
    r"imprint",
    r"legal",
    r"accessibility",
)
_TRAILING_PUNCTUATION: Final = r"[\s.!:…»›>→]*"
_BOILERPLATE_LINE: Final = re.compile(rf"(?:{'|'.join(_BOILERPLATE)}){_TRAILING_PUNCTUATION}", re.IGNORECASE)
_NAVIGATION_ITEM: Final = re.compile(
    rf"(?:{'|'.join(_BOILERPLATE + _NAVIGATION)}){_TRAILING_PUNCTUATION}", re.IGNORECASE
)
_NAVIGATION_SEPARATOR: Final = re.compile(r"\s*[|·•]\s*")


def remove_boilerplate(text: str) -> str:
    """Drop lines that are nothing but site chrome, keeping everything else byte for byte.

    A line is dropped when, stripped of surrounding whitespace, it fully matches one of
    ``_BOILERPLATE`` (e.g. "Click here to subscribe", "© 2024 Acme Inc. All rights reserved.",
    "Cookie policy", "Share this", "Skip to content"), case-insensitively, or when it is a ``|``/
    ``·``/``•``-separated list of two or more such items or navigation links ("Privacy policy |
    Terms of use"). The dropped line leaves an empty line behind, so paragraphs do not merge.
    """
    lines = text.split("\n")
    return "\n".join("" if _is_boilerplate(line) else line for line in lines)


def _is_boilerplate(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _BOILERPLATE_LINE.fullmatch(stripped):
        return True
    items = [item for item in _NAVIGATION_SEPARATOR.split(stripped) if item]
    return len(items) >= 2 and all(_NAVIGATION_ITEM.fullmatch(item) for item in items)


# --- Whitespace -------------------------------------------------------------------------------------

_HORIZONTAL_SPACE: Final = re.compile(r"[^\S\n]+")
_BLANK_LINES: Final = re.compile(r"\n{3,}")


def normalise_whitespace(text: str) -> str:
    """Collapse whitespace while keeping paragraphs.

    Every run of whitespace other than ``\\n`` becomes one space; lines lose leading and trailing
    spaces; runs of blank lines become a single blank line (a paragraph break); the text loses
    leading and trailing blank lines. Expects ``\\n`` line breaks (see :func:`normalise_unicode`);
    other vertical whitespace counts as a space.
    """
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")
