"""Turning generated token ids into text one token at a time, and finding stop sequences in it.

Decoding each token on its own is wrong for byte-level BPE (a character may span tokens) and for
tokenizers whose decoding depends on the previous token (leading spaces). :class:`IncrementalDetokenizer`
uses Text Generation Inference's prefix/read offsets: it decodes a short window that ends at the new
token and emits only the text the window gained, holding text back while it ends in an incomplete
character. The concatenation of everything it emits (after :meth:`flush`) is the decoded text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# A decode that ends in the middle of a UTF-8 sequence ends in the replacement character.
_INCOMPLETE = "\N{REPLACEMENT CHARACTER}"
# Prompt tokens decoded in front of the first generated token, so its leading space survives.
_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Decodes a growing list of token ids into text deltas; special tokens decode to nothing.

    Contract: ``"".join(add(t) for t in ids) + flush() == tokenizer.decode(ids, skip_special_tokens=True)``
    for tokenizers whose decoding is local (every byte-level BPE or sentencepiece tokenizer).
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        context = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._ids: list[int] = context
        self._prefix_offset = 0
        self._read_offset = len(context)

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes (possibly "", held back for the next one)."""
        self._ids.append(token_id)
        return self._advance(force=False)

    def flush(self) -> str:
        """The text still held back (an incomplete character at the very end), emitted as is."""
        return self._advance(force=True)

    def _advance(self, force: bool) -> str:
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and (force or not new_text.endswith(_INCOMPLETE)):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return new_text[len(prefix_text) :]
        return ""


def find_stop(text: str, stops: Sequence[str], searched: int) -> tuple[str, int] | None:
    """The first stop sequence in ``text`` that was not there in ``text[:searched]``.

    Returns ``(stop, index)`` where ``index`` is where it starts, or None. Only the tail that the new
    text could have completed is scanned, so calling it after every token costs O(token + stop length).
    """
    best: tuple[str, int] | None = None
    for stop in stops:
        start = max(0, searched - len(stop) + 1)
        index = text.find(stop, start)
        if index >= 0 and (best is None or index < best[1]):
            best = (stop, index)
    return best


def safe_prefix_length(text: str, stops: Sequence[str]) -> int:
    """How much of ``text`` can be shown without showing part of a stop sequence that may follow.

    Streaming chat hides stop sequences (OpenAI semantics), so it holds back a tail of ``text`` that is
    a prefix of some stop sequence until the next token decides.
    """
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return len(text) - hold
