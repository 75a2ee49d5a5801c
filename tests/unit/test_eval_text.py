"""Tokenisation and sentence splitting used by BM25 and the answer-support metric."""

from __future__ import annotations

from serving.eval.text import content_words, sentences, tokens


def test_tokens_keep_identifiers_whole_and_lower_case() -> None:
    assert tokens("Run dpkg-deb on apt.conf, pg_dump and C++ code.") == [
        "run", "dpkg-deb", "on", "apt.conf", "pg_dump", "and", "c++", "code",
    ]  # fmt: skip


def test_content_words_drop_stopwords_and_single_characters() -> None:
    assert content_words("How do I install a package with the -i option?") == ["install", "package", "option"]


def test_sentences_split_on_terminal_punctuation_and_blank_lines() -> None:
    text = "Use dpkg -i to install. It works, e.g. for local files! Really?\n\nA new paragraph"
    assert sentences(text) == [
        "Use dpkg -i to install.",
        "It works, e.g. for local files!",
        "Really?",
        "A new paragraph",
    ]


def test_sentences_of_blank_text_are_empty() -> None:
    assert sentences("  \n\n ") == []
