"""Judge-free measures of a generated answer: looping, citations, overlap with a reference, abstention.

All pure functions of strings, so they are unit-tested without a model:

- :func:`repeated_4gram_share`: the share of an answer's word 4-grams that occur more than once; an
  answer *loops* when it exceeds :data:`LOOP_THRESHOLD` (0.3), e.g. "The answer is: The answer is: ...".
- :func:`cited`: the ``[n]`` markers an answer uses (1-based, as the prompt numbers its documents).
- :func:`token_f1`: SQuAD-style token F1 between an answer and a reference text (lower-cased words,
  citation markers and punctuation removed).
- :func:`says_dont_know`: whether the answer abstains ("I don't know" and close variants).
"""

from __future__ import annotations

import re
from collections import Counter

from serving.guardrails.citations import cited, says_dont_know

__all__ = [
    "cited",
    "loops",
    "reference_answer",
    "repeated_4gram_share",
    "says_dont_know",
    "token_f1",
    "words",
]

LOOP_THRESHOLD = 0.3
_CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased words, without citation markers or punctuation."""
    return _WORD.findall(_CITATION.sub(" ", text.lower()))


def repeated_4gram_share(text: str) -> float:
    """Share in [0, 1] of the word 4-grams of ``text`` that are repeats of an earlier one."""
    w = words(text)
    grams = [tuple(w[i : i + 4]) for i in range(len(w) - 3)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def loops(text: str) -> bool:
    return repeated_4gram_share(text) > LOOP_THRESHOLD


def token_f1(answer: str, reference: str) -> float:
    a, r = Counter(words(answer)), Counter(words(reference))
    common = sum((a & r).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def reference_answer(body: str, max_words: int = 60) -> str:
    """The reference for token-F1: the opening of the gold section (its first ``max_words`` words).

    A Debian FAQ section answers its heading's question in its first sentences; the rest is detail
    a short answer leaves out, so comparing against the whole section would punish brevity.
    """
    return " ".join(body.split()[:max_words])
