"""Whether generated text reproduces the fixed prompt (instructions or worked examples).

The prefix every prompt starts with is the one thing an extraction attack is after. An answer
that shares a run of :data:`SHINGLE` consecutive words with it is a leak, whatever the question
was: the output check catches what the input rules missed.
"""

from __future__ import annotations

import functools
import re

from serving.generation.prompt import prefix_messages

SHINGLE = 6
"""Words in a row that count as reproducing the prompt (short enough to catch a paraphrased
opening, long enough that ordinary English shares none with the instructions)."""

_WORD = re.compile(r"[a-z0-9']+")


def _shingles(text: str) -> set[tuple[str, ...]]:
    w = _WORD.findall(text.lower())
    return {tuple(w[i : i + SHINGLE]) for i in range(len(w) - SHINGLE + 1)}


@functools.cache
def prompt_shingles() -> frozenset[tuple[str, ...]]:
    """The word runs of the fixed prefix's system text and example documents (built once)."""
    out: set[tuple[str, ...]] = set()
    for message in prefix_messages():
        if message["role"] != "assistant":  # the example answers are short and ordinary English
            out |= _shingles(message["content"])
    return frozenset(out)


def leaks_prompt(text: str) -> bool:
    return not _shingles(text).isdisjoint(prompt_shingles())
