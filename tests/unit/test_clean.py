"""Tests of streams.clean: each cleaning step on realistic input, and clean_text's contracts."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.clean import (
    clean_text,
    normalise_unicode,
    normalise_whitespace,
    remove_boilerplate,
    strip_html,
    strip_markdown,
)

# --- normalise_unicode ------------------------------------------------------------------------------


def test_normalise_unicode_folds_compatibility_forms() -> None:
    # Full-width letters, a ligature, NBSP, a superscript and a decomposed accent, as pasted from PDFs.
    text = "ＡＰＩ ﬁnance\u00a0report x² cafe\u0301"
    assert normalise_unicode(text) == "API finance report x2 café"


def test_normalise_unicode_unifies_line_breaks_and_tabs() -> None:
    assert normalise_unicode("a\r\nb\rc\x0cd\u2028e\tf") == "a\nb\nc\nd\ne f"


def test_normalise_unicode_removes_controls_and_invisible_characters() -> None:
    text = "\ufeffco\u00adoperate\x00 with\u200b us\x1b[0m\u202e!\x85next"
    assert normalise_unicode(text) == "cooperate with us[0m!\nnext"


def test_normalise_unicode_keeps_joiners_that_change_meaning() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, glued by ZWJ
    persian = "می\u200cخواهم"  # ZWNJ inside a Persian word
    assert normalise_unicode(family) == family
    assert normalise_unicode(persian) == persian


def test_normalise_unicode_drops_lone_surrogates() -> None:
    assert normalise_unicode("a\ud800b") == "ab"


def test_normalise_unicode_composes_across_removed_controls() -> None:
    # The control sat between the letter and its accent; once removed they compose.
    assert normalise_unicode("e\x07\u0301") == "é"


# --- strip_html -------------------------------------------------------------------------------------

ARTICLE_HTML = """<!DOCTYPE html>
<html><head><title>Release notes</title><style>p { color: red; }</style></head>
<body>
<!-- tracking pixel below -->
<h1 class="title">Release&nbsp;2.1</h1>
<p>The <b>new</b> indexer is <a href="/docs/indexer">documented here</a> &amp; faster.</p>
<script type="text/javascript">if (a < b && c > d) { track(); }</script>
<ul><li>Faster writes</li><li>Fewer &lt;stale&gt; chunks</li></ul>
<table><tr><th>Metric</th><th>Value</th></tr><tr><td>p99</td><td>40&#8239;ms</td></tr></table>
<p>Line one<br/>line two</p>
</body></html>"""


def test_strip_html_keeps_visible_text_and_structure() -> None:
    out = normalise_whitespace(strip_html(ARTICLE_HTML))
    assert out == (
        "Release 2.1\n\n"
        "The new indexer is documented here & faster.\n\n"
        "Faster writes\nFewer <stale> chunks\n\n"
        "Metric Value\np99 40 ms\n\n"
        "Line one\nline two"
    )


def test_strip_html_drops_script_style_head_and_comments() -> None:
    out = strip_html(ARTICLE_HTML)
    for gone in ("track()", "color: red", "tracking pixel", "Release notes", "DOCTYPE", "<", "href"):
        assert gone not in out.replace("<stale>", "")


def test_strip_html_keeps_angle_brackets_that_are_not_tags() -> None:
    prose = "Use Vec<T> or Map<K, V>; if a<b and c>d, mail <ops@example.com>."
    assert strip_html(prose) == prose


def test_strip_html_decodes_nested_entities_completely() -> None:
    assert strip_html("Fish &amp;amp; chips &copy; &#x41;&#66;") == "Fish & chips © AB"


def test_strip_html_removes_custom_elements_and_attributes_with_quotes() -> None:
    html = '<my-widget data-x="1">Hello</my-widget> <span title=\'a "b"\'>world</span>'
    assert strip_html(html) == "Hello world"


# --- strip_markdown ---------------------------------------------------------------------------------

README_MD = """# Streamrag ##

A **streaming** RAG platform with _exactly-once_ writes and ~~batch~~ jobs.

> **Note**
> Requires `Kafka` >= 3.7.

## Install

1. Clone the repo.
2. Run `make install`.

- [x] Debezium CDC
* Bytewax flows
+ [Qdrant](https://qdrant.tech/ "Qdrant home") storage, see [the docs][docs].

```python
def handler(*args, **kwargs):
    return 2 * 3
```

| Component | Port |
|-----------|:----:|
| Kafka     | 19092 |

![Architecture diagram](docs/arch.png)
Questions? <https://github.com/example/streamrag>

---
[docs]: https://example.com/docs
"""


def test_strip_markdown_removes_markup_and_keeps_words() -> None:
    out = normalise_whitespace(strip_markdown(README_MD))
    assert out == (
        "Streamrag\n\n"
        "A streaming RAG platform with exactly-once writes and batch jobs.\n\n"
        "Note\nRequires Kafka >= 3.7.\n\n"
        "Install\n\n"
        "1. Clone the repo.\n2. Run make install.\n\n"
        "Debezium CDC\nBytewax flows\nQdrant storage, see the docs.\n\n"
        "def handler(*args, **kwargs):\nreturn 2 * 3\n\n"
        "Component Port\n"
        "Kafka 19092\n\n"
        "Architecture diagram\nQuestions? https://github.com/example/streamrag"
    )


def test_strip_markdown_leaves_look_alikes_of_markup_alone() -> None:
    prose = (
        "Tag it #streaming, compute 2*3*4 or a * b, call __init__ on snake_case_name, "
        "glob *.py files and pipe cmd1 | cmd2; C# is fine, so is -5 degrees."
    )
    assert strip_markdown(prose) == prose


def test_strip_markdown_handles_links_with_parentheses_in_urls() -> None:
    text = "See [Bytewax](https://en.wikipedia.org/wiki/Dataflow_(computing)) for details."
    assert strip_markdown(text) == "See Bytewax for details."


def test_strip_markdown_removes_setext_underlines_and_nested_prefixes() -> None:
    text = "Title\n=====\n\n> - # Quoted heading #\n> > nested"
    assert strip_markdown(text) == "Title\n\n\nQuoted heading\nnested"


# --- remove_boilerplate -----------------------------------------------------------------------------


def test_remove_boilerplate_drops_site_chrome_lines() -> None:
    page = "\n".join(
        [
            "Skip to content",
            "Kafka retention explained",
            "Retention decides how long a topic keeps its records.",
            "Share this article on Twitter",
            "Click here to subscribe!",
            "Privacy Policy | Terms of Use | Cookie policy",
            "© 2024 Acme Corp. All rights reserved.",
            "(c) 2019-2024 Example Ltd",
        ]
    )
    assert remove_boilerplate(page).split("\n") == [
        "",
        "Kafka retention explained",
        "Retention decides how long a topic keeps its records.",
        "",
        "",
        "",
        "",
        "",
    ]


def test_remove_boilerplate_keeps_sentences_that_mention_boilerplate_words() -> None:
    content = "\n".join(
        [
            "Our cookie policy changed in May: we no longer set tracking cookies.",
            "All rights reserved by the licensor remain with the licensor.",
            "Share this link only with your team.",
            "Privacy Policy",  # alone it may be the title of a real document
            "Copyright 1999 was a good year for the project.",
            "Home directories live on /home.",
        ]
    )
    assert remove_boilerplate(content) == content


# --- normalise_whitespace ---------------------------------------------------------------------------


def test_normalise_whitespace_collapses_runs_and_keeps_paragraphs() -> None:
    text = "\n\n  First   line \u00a0 here.  \nSecond\tline.\n \n\n\n  Next paragraph.   \n\n"
    assert normalise_whitespace(text) == "First line here.\nSecond line.\n\nNext paragraph."


# --- clean_text -------------------------------------------------------------------------------------


def test_clean_text_on_a_web_page() -> None:
    page = (
        "<nav><a href='#main'>Skip to content</a></nav>"
        "<article><h2>How&nbsp;CDC works</h2>"
        "<p>Debezium reads the <em>write-ahead log</em>\r\nand emits one event per row change.</p>"
        "<p>Consumers apply events in <code>order_key</code> order.</p></article>"
        "<footer><p>Share this</p><p>&copy; 2025 Example Ltd. All rights reserved.</p></footer>"
    )
    assert clean_text(page) == (
        "How CDC works\n\n"
        "Debezium reads the write-ahead log\nand emits one event per row change.\n\n"
        "Consumers apply events in order_key order."
    )


def test_clean_text_of_clean_prose_is_the_identity() -> None:
    prose = "Kafka keeps records.\n\nBytewax reads them, and Qdrant stores vectors: 384 floats each."
    assert clean_text(prose) == prose


def test_clean_text_resolves_markup_revealed_by_decoding() -> None:
    # Double-escaped HTML only becomes a tag after decoding; idempotence requires removing it too.
    assert clean_text("Bold: &amp;lt;b&amp;gt;yes&amp;lt;/b&amp;gt;") == "Bold: yes"


# --- properties -------------------------------------------------------------------------------------

# Fragments of markup, entities, boilerplate and awkward characters, so that random concatenations
# build nested and half-broken markup that the cleaner must still settle.
FRAGMENTS = st.sampled_from(
    [
        "<p>", "</p>", "<li>", "</li>", "<br>", "<b>", "</b>", "<script>", "</script>", "<!--", "-->",
        "<a href='x'>", "&amp;", "&lt;", "&gt;", "&", "lt;", "#", "## ", " ", "  ", "\n", "\n\n", "*",
        "**", "_", "__", "`", "```", "~~", "~~~", "[", "]", "(", ")", "!", "|", "-", "---", "+", ">",
        ":", "word", "Share this", "All rights reserved", "Home", "·", "\t", "\r", "\u00a0", "\u0301",
        "e", "1.", "[x]", "=", "\\", "\u200b", "ﬁ", "＜", "＃", "http://a.b", "<https://a.b>", "a_b",
    ]
)  # fmt: skip
MARKUP_SOUP = st.lists(FRAGMENTS, max_size=30).map("".join)
WORDS = st.sampled_from(["kafka", "stream", "Vector", "index", "retrieval", "latency", "chunk", "offsets"])
PROSE = st.lists(
    st.lists(
        st.lists(WORDS, min_size=1, max_size=8).map(lambda words: " ".join(words) + "."),
        min_size=1,
        max_size=3,
    ).map(" ".join),
    min_size=1,
    max_size=4,
).map("\n\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(MARKUP_SOUP, st.text()))
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_clean_text_never_raises_and_returns_tidy_text(text: str) -> None:
    out = clean_text(text)
    assert out == unicodedata.normalize("NFKC", out)
    assert out == out.strip()
    assert "\n\n\n" not in out
    assert not re.search(r"[^\S\n]\n|\n[^\S\n]|[^\S\n]{2}|[\t\r\x00-\x08\x0b-\x1f\x7f-\x9f]", out)
    out.encode("utf-8")  # raises on a lone surrogate


@settings(max_examples=200, deadline=None)
@given(PROSE)
def test_clean_text_leaves_plain_paragraphs_untouched(prose: str) -> None:
    assert clean_text(prose) == prose


@settings(max_examples=300, deadline=None)
@given(st.one_of(MARKUP_SOUP, st.text(alphabet="ab _*`~[]()!<>:/\n")))
def test_strip_markdown_skips_only_patterns_whose_marker_is_absent(text: str) -> None:
    # strip_markdown runs an inline pattern only when its marker is in the text; running every
    # pattern unconditionally must give the same result.
    from streams.clean import _INLINE_MARKUP, _strip_block_markup

    expected = _strip_block_markup(text)
    for pattern, _marker, keep in _INLINE_MARKUP:
        expected = pattern.sub(keep, expected)
    assert strip_markdown(text) == expected
