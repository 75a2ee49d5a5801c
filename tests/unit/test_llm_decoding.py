"""Incremental detokenization and stop sequences (serving.llm.decoding)."""

from __future__ import annotations

from typing import Any

import pytest

from serving.llm.decoding import IncrementalDetokenizer, find_stop, safe_prefix_length


@pytest.mark.parametrize(
    ("text", "stops", "searched", "expected"),
    [
        ("Paris. Lyon.", ["."], 0, (".", 5)),
        ("Paris. Lyon.", ["."], 6, (".", 11)),  # the first "." was already there
        ("Paris", ["."], 0, None),
        ("ab###cd", ["###", "#c"], 3, ("###", 2)),  # a stop that straddles the searched boundary
        ("abc", ["bc", "c"], 1, ("bc", 1)),  # the earliest start wins
    ],
)
def test_find_stop(text: str, stops: list[str], searched: int, expected: tuple[str, int] | None) -> None:
    assert find_stop(text, stops, searched) == expected


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("Hello wor", ["world"], 6),  # "wor" may become "world": hold it back
        ("Hello", ["world"], 5),
        ("Answer:\n", ["\n\n"], 7),
        ("a<|", ["<|end|>", "x"], 1),
        ("", ["x"], 0),
    ],
)
def test_safe_prefix_length(text: str, stops: list[str], expected: int) -> None:
    assert safe_prefix_length(text, stops) == expected


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from serving.llm.loading import ensure_converted
    from serving.llm.settings import LLMServerSettings

    folder = ensure_converted(LLMServerSettings().models_dir)
    return AutoTokenizer.from_pretrained(folder, clean_up_tokenization_spaces=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        " Paris is the capital of France.",
        "Größe, café, naïve: déjà vu!",
        "日本語のテキストと emoji 🎉🚀 mixed",  # characters that span several byte-level tokens
        "  leading spaces\n\nand\ttabs",
    ],
)
def test_incremental_decoding_joins_to_the_full_decode(tokenizer: Any, text: str) -> None:
    prompt_ids = tokenizer("Some prompt:")["input_ids"]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer, prompt_ids)

    pieces = [detok.add(i) for i in ids]
    pieces.append(detok.flush())

    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
    assert all("\N{REPLACEMENT CHARACTER}" not in p for p in pieces)


@pytest.mark.slow
def test_a_split_character_is_held_back_until_complete(tokenizer: Any) -> None:
    ids = tokenizer("🎉", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # the emoji's bytes span several tokens
    detok = IncrementalDetokenizer(tokenizer, [])

    pieces = [detok.add(i) for i in ids]

    assert pieces[:-1] == [""] * (len(ids) - 1)
    assert pieces[-1] == "🎉"
