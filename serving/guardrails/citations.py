"""Reading an answer's citations: which ``[n]`` it cites, whether it abstains, and whether its
citations point at sources it was given.

The prompt numbers the documents it gives the generator ``[1]..[n]``; an answer is *grounded*
when it cites at least one of them and none outside. An answer that cites nothing while context
existed, or cites a number it was not given, is flagged (and, by a setting, replaced by "I don't
know"); an answer that abstains is not flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CITATION = re.compile(r"\[(\d{1,2})\]")
_DONT_KNOW = re.compile(
    r"\b(i don't know|i do not know|i don\u2019t know|not (?:mentioned|provided|stated) in the documents)\b"
)


def cited(text: str) -> list[int]:
    """The distinct citation numbers in order of first use."""
    seen: list[int] = []
    for m in _CITATION.finditer(text):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def says_dont_know(text: str) -> bool:
    """Whether the answer abstains ("I don't know" and close variants)."""
    return bool(_DONT_KNOW.search(text.lower()))


@dataclass(frozen=True, slots=True)
class CitationCheck:
    cited: list[int]
    unknown: list[int]
    """Cited numbers that name no provided source."""
    uncited: bool
    """Context was given, the answer does not abstain, and it cites no provided source."""

    @property
    def flagged(self) -> bool:
        return bool(self.unknown) or self.uncited


def check_citations(answer: str, sources: int) -> CitationCheck:
    """Judge ``answer`` against the ``sources`` documents (numbered 1..sources) it was given."""
    numbers = cited(answer)
    unknown = [n for n in numbers if not 1 <= n <= sources]
    valid = [n for n in numbers if 1 <= n <= sources]
    uncited = sources > 0 and not valid and not says_dont_know(answer)
    return CitationCheck(numbers, unknown, uncited)
