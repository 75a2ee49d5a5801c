"""Debian FAQ chapter parsing and labelling rules, on a DocBook-shaped XHTML fragment."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.eval.faq import chapter_files, chapter_records, parse_chapter
from serving.eval.schema import EvalDocument, EvalQuery, SourceMissingError

Records = tuple[list[EvalDocument], list[EvalQuery]]

FILLER = "This sentence pads the answer so that it is long enough to be kept as a document. "

CHAPTER = f"""<?xml version="1.0" encoding="UTF-8"?>
<html><head><title>Chapter 8. Tools</title><style>body {{ color: red }}</style></head><body>
<div class="navheader"><table><tr><th>Chapter 8. Tools</th></tr></table></div>
<div class="chapter"><div class="titlepage"><h1 class="title"><a id="tools"></a>Chapter 8. Tools</h1></div>
<div class="toc"><dl><dt><a href="#progs">8.1. What programs are there?</a></dt></dl></div>
<div class="section"><div class="titlepage"><h2 class="title"><a id="progs"></a>8.1. What programs
 are there?</h2></div><p>There are <span class="command"><strong>several</strong></span> tools. {FILLER}</p>
<div class="section"><h3 class="title"><a id="dpkg"></a>8.1.1. dpkg</h3>
<p>The low level tool; see Section 8.2, &#8220;How do I list <code>files</code>?&#8221; for more. {FILLER}</p>
<pre class="screen">dpkg  --list
dpkg  -L foo</pre>
<div class="section"><h4 class="title"><a id="deep"></a>8.1.1.1. Is there a deeper question?</h4>
<p>Yes, nested questions are documents of their own. {FILLER}</p></div></div></div>
<div class="section"><h2 class="title"><a id="listfiles"></a>8.2. How do I list <code>files</code>?</h2>
<p>Use dpkg -L. {FILLER}</p></div>
<div class="section"><h2 class="title"><a id="short"></a>8.3. Is this answer too short?</h2><p>Yes.</p></div>
<div class="section"><h2 class="title"><a id="history"></a>8.4. History</h2><p>Long ago. {FILLER}</p></div>
<div class="footnotes"><p>A footnote that must not be in any document.</p></div>
</div><div class="navfooter"><p>Next chapter</p></div></body></html>
"""


@pytest.fixture(scope="module")
def records() -> Records:
    return chapter_records("tools", parse_chapter(CHAPTER))


def test_parse_chapter_yields_headings_without_numbers_in_document_order() -> None:
    sections = parse_chapter(CHAPTER)
    assert [(s.level, s.anchor, s.heading) for s in sections] == [
        (1, "tools", "Tools"),
        (2, "progs", "What programs are there?"),
        (3, "dpkg", "dpkg"),
        (4, "deep", "Is there a deeper question?"),
        (2, "listfiles", "How do I list files?"),
        (2, "short", "Is this answer too short?"),
        (2, "history", "History"),
    ]


def test_each_question_is_a_query_for_its_own_section(records: Records) -> None:
    documents, queries = records
    assert [d.doc_id for d in documents] == [
        "debian-faq/tools#progs",
        "debian-faq/tools#deep",
        "debian-faq/tools#listfiles",
        "debian-faq/tools#history",
    ]
    assert {q.text: q.relevant_doc_ids for q in queries} == {
        "What programs are there?": ["debian-faq/tools#progs"],
        "Is there a deeper question?": ["debian-faq/tools#deep"],
        "How do I list files?": ["debian-faq/tools#listfiles"],
    }
    assert all(d.title == "Tools" and d.source == "debian-faq" for d in documents)


def test_non_question_subsections_join_their_question_and_nested_questions_do_not(
    records: Records,
) -> None:
    progs = records[0][0]
    assert progs.body.startswith("There are several tools.")
    assert "dpkg\n\nThe low level tool" in progs.body
    assert "dpkg  --list\ndpkg  -L foo" in progs.body  # <pre> keeps its layout
    assert "nested questions" not in progs.body
    assert "What programs are there?" not in progs.body


def test_cross_reference_titles_navigation_toc_and_footnotes_are_dropped(
    records: Records,
) -> None:
    text = "\n".join(d.body for d in records[0])
    assert "see Section 8.2 for more" in text
    assert "How do I list" not in text
    for noise in ("footnote", "Next chapter", "Chapter 8", "color: red"):
        assert noise not in text


def test_too_short_answers_and_their_questions_are_dropped(records: Records) -> None:
    assert not [q for q in records[1] if "too short" in q.text]


def test_missing_faq_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(SourceMissingError, match="apt-get install -y debian-faq"):
        chapter_files(tmp_path)
