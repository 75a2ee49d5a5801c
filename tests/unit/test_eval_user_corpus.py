"""A user's JSONL corpus for the retrieval study: what loads, and errors that name line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.study import WordWindows
from serving.eval.schema import CorpusError
from serving.eval.user_corpus import load_user_corpus


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_documents_and_questions_load(tmp_path: Path) -> None:
    corpus = load_user_corpus(_write(tmp_path, [
        {"doc_id": "b", "body": "Beta text."},
        {"doc_id": "a", "title": "Alpha", "body": "Alpha text."},
        "",
        {"question": "What is alpha?", "relevant": ["a"]},
    ]))  # fmt: skip
    assert [d.doc_id for d in corpus.documents] == ["a", "b"]
    assert corpus.documents[0].title == "Alpha" and corpus.documents[1].title == ""
    (query,) = corpus.queries
    assert query.text == "What is alpha?" and query.relevant_doc_ids == ["a"] and query.source == "mine"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", r"mine.jsonl:2: not JSON"),
        ({"question": "q", "relevant": []}, r":2: 'relevant' must be a non-empty list"),
        ({"question": "q", "relevant": ["nope"]}, r"unknown documents \['nope'\]"),
        ({"doc_id": "c"}, r":2: 'body' must be a string"),
        ({"text": "?"}, r":2: a line needs 'doc_id'"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_user_corpus(_write(tmp_path, [{"doc_id": "a", "body": "x"}, row]))


def test_word_windows_overlap_and_cover_the_text() -> None:
    text = " ".join(f"w{i}" for i in range(25))
    windows = WordWindows(10, 4).windows(text)
    assert windows[0].split()[:2] == ["w0", "w1"] and len(windows[0].split()) == 10
    assert windows[1].split()[0] == "w6"  # stride 6: 4 words shared
    assert windows[-1].split()[-1] == "w24"
    assert WordWindows(10, 4).windows("a b") == ["a b"]
    with pytest.raises(ValueError):
        WordWindows(10, 10)
