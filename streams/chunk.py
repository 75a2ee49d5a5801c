"""Token-aware chunking: sliding windows sized by the embedder's own tokenizer, inside parent sections.

A document is cut into *parents* (runs of whole paragraphs of at most ``parent_max_tokens``; a longer
paragraph is split at sentences, then at words) for small-to-big retrieval: the small child is
matched, its parent is returned. Each parent is cut into overlapping child *windows* that the
embedder reads without truncation; windows never straddle parents. Every chunk is an exact slice of
the input text: offsets come from one tokenisation with offset mapping, nothing is decoded back.

Sizes are counted in tokens of the given tokenizer without special tokens. The guarantee that
matters most is that the embedder never truncates silently: every chunk's text, tokenised again on
its own, has ``token_count <= max_tokens`` tokens, and ``max_tokens`` plus the special tokens fits the
model (checked when the :class:`Chunker` is built).

Windows start on word boundaries. Tokenising a slice that starts inside a word gives different
tokens (``"ization"`` is ``i ##zation``, not the ``##ization`` it was inside ``tokenization``), so a
window starting mid-word could hold more tokens than it was sized for. Each window therefore ends
exactly ``overlap`` tokens after the word boundary where the next one starts: consecutive windows
share exactly ``overlap`` tokens, and a window holds at most ``max_tokens`` tokens, less than one word
fewer when the stride does not land on a word boundary. The last window of a parent ends on the
parent's last token and is moved back to be as full as the others, so it overlaps its predecessor by
at least ``overlap`` tokens (no tiny tail window). Only a single word longer than
``max_tokens - overlap`` tokens is cut inside; such windows are verified by tokenising them again and
may overlap less.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tokenizers import models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

__all__ = ["MIN_MAX_TOKENS", "Chunk", "Chunker", "ChunkingConfig"]

# Any one character tokenises to at most three tokens with BERT-style tokenizers (a Hangul syllable
# becomes up to three jamo), so a window of at least this many tokens can always make progress.
MIN_MAX_TOKENS: Final = 8

_PARAGRAPH_BREAK: Final = re.compile(r"\n[^\S\n]*\n")
# The end of a sentence: terminal punctuation with any closing quotes or brackets, then whitespace;
# CJK full stops need no space after them.
_SENTENCE_END: Final = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One child window of a document, with the parent section it lies in.

    ``text == document[start:end]`` and ``parent_text`` is the exact slice of the document that holds
    it; offsets are ``str`` indices (code points). ``token_count`` is the number of tokens of
    ``text`` by the chunker's tokenizer, without special tokens. ``token_ids`` are those tokens
    when they are known without tokenising ``text`` again (the window is whole words of a tokenizer
    whose words tokenise independently), else None; when set they equal ``tokenizer(text)``'s ids.
    """

    index: int
    text: str
    start: int
    end: int
    token_count: int
    parent_index: int
    parent_text: str
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ChunkingConfig:
    """Window sizes, in tokens without special tokens; validated by :class:`Chunker`."""

    max_tokens: int = 128
    overlap: int = 32
    parent_max_tokens: int = 384


class Chunker:
    """Cuts text into :class:`Chunk` windows; see the module docstring for the contract."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, config: ChunkingConfig, model_max_tokens: int
    ) -> None:
        """Check ``config`` against the tokenizer and the model's input limit (tokens, specials included).

        Raises ``ValueError`` if a full window plus the special tokens would not fit the model (it
        would be truncated silently), if ``overlap`` is negative or not below ``max_tokens``, if
        ``max_tokens`` is below :data:`MIN_MAX_TOKENS`, or if ``parent_max_tokens < max_tokens``.
        Raises ``TypeError`` for a slow (pure Python) tokenizer, which has no offset mapping.
        """
        if not tokenizer.is_fast:
            raise TypeError("Chunker needs a fast tokenizer: it relies on the offset mapping")
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        if config.max_tokens < MIN_MAX_TOKENS:
            raise ValueError(f"max_tokens={config.max_tokens} is below the minimum of {MIN_MAX_TOKENS}")
        if config.max_tokens + specials > model_max_tokens:
            raise ValueError(
                f"max_tokens={config.max_tokens} plus {specials} special tokens exceeds the model's "
                f"{model_max_tokens}-token input: the model would truncate chunks silently"
            )
        if not 0 <= config.overlap < config.max_tokens:
            raise ValueError(f"overlap={config.overlap} must be in [0, max_tokens={config.max_tokens})")
        if config.parent_max_tokens < config.max_tokens:
            raise ValueError(
                f"parent_max_tokens={config.parent_max_tokens} is below max_tokens={config.max_tokens}"
            )
        self._tokenizer = tokenizer
        self._config = config
        self._words_are_independent = _tokenises_words_independently(tokenizer)

    @classmethod
    def from_model_path(cls, path: str, config: ChunkingConfig, model_max_tokens: int = 256) -> Chunker:
        """A chunker using the tokenizer stored with the model at ``path`` (a local directory)."""
        return cls(AutoTokenizer.from_pretrained(path), config, model_max_tokens)

    @property
    def config(self) -> ChunkingConfig:
        return self._config

    def chunk(self, text: str) -> list[Chunk]:
        """Cut ``text`` into windows, in document order; ``[]`` if it holds no token at all."""
        return self.chunk_many([text])[0]

    def chunk_many(self, texts: Sequence[str]) -> list[list[Chunk]]:
        """``[self.chunk(text) for text in texts]``, the texts tokenised in one call.

        The tokenizer encodes a list of texts in parallel on the Rust side (a batch of documents
        tokenises in about half the time it takes one by one, on two cores); the windows are the same.
        """
        out: list[list[Chunk]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return out
        encoding = self._tokenizer(
            [texts[i] for i in todo],
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,
        )
        for row, i in enumerate(todo):
            tokens = _Tokens.build(
                texts[i], encoding["offset_mapping"][row], encoding.word_ids(row), encoding["input_ids"][row]
            )
            out[i] = self._cut(tokens)
        return out

    def _cut(self, tokens: _Tokens) -> list[Chunk]:
        """The windows of a tokenised text (see :meth:`chunk`)."""
        if not tokens.size:
            return []
        text = tokens.text
        chunks: list[Chunk] = []
        for parent_index, (first, stop) in enumerate(_parents(tokens, self._config.parent_max_tokens)):
            parent_text = text[tokens.starts[first] : tokens.ends[stop - 1]]
            for window in self._windows(tokens, first, stop):
                start, end = tokens.starts[window.first], tokens.ends[window.stop - 1]
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        text=text[start:end],
                        start=start,
                        end=end,
                        token_count=window.token_count,
                        parent_index=parent_index,
                        parent_text=parent_text,
                        token_ids=tuple(tokens.ids[window.first : window.stop])
                        if self._retokenises_exactly(tokens, window.first, window.stop)
                        else None,
                    )
                )
        return chunks

    # --- tokens -------------------------------------------------------------------------------------

    def _retokenises_exactly(self, tokens: _Tokens, first: int, stop: int) -> bool:
        """Whether the text of token range ``[first, stop)`` tokenises on its own to exactly those tokens."""
        return bool(self._words_are_independent and tokens.is_word_start[first] and tokens.is_cut[stop])

    def _count(self, tokens: _Tokens, first: int, stop: int) -> int:
        """Tokens of the text of token range ``[first, stop)`` when tokenised on its own."""
        if self._retokenises_exactly(tokens, first, stop):
            # Words tokenise independently of their neighbours, and truncating a word after some of
            # its pieces keeps those pieces (WordPiece is greedy longest-prefix): the slice
            # re-tokenises to exactly these tokens.
            return stop - first
        text = tokens.text[tokens.starts[first] : tokens.ends[stop - 1]]
        ids = self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return len(ids)

    # --- windows ------------------------------------------------------------------------------------

    def _windows(self, tokens: _Tokens, first: int, stop: int) -> list[_Window]:
        """Child windows covering the parent's token range ``[first, stop)``, in order."""
        windows: list[_Window] = []
        start = first
        while True:
            window, next_start = self._window_at(tokens, start, stop)
            if windows and window.stop <= windows[-1].stop:
                # Only inside a giant word: a slice starting mid-word can re-tokenise so much longer
                # that it ends no further than the previous window. It would add nothing; start later.
                start = tokens.cut_above(start) or stop
                continue
            if next_start is None:
                previous = windows[-1].first if windows else None
                windows.append(self._right_aligned(tokens, window, previous))
                return windows
            windows.append(window)
            start = next_start

    def _window_at(self, tokens: _Tokens, start: int, stop: int) -> tuple[_Window, int | None]:
        """The window starting at token ``start`` and where the next one starts (None: it is the last)."""
        size, overlap = self._config.max_tokens, self._config.overlap
        limit = min(start + size, stop)
        while limit > start:
            if limit == stop:
                count = self._count(tokens, start, stop)
                if count <= size:
                    return _Window(start, stop, count), None
                limit = tokens.cut_below(stop, start) or start
                continue
            # End the window `overlap` tokens after the next window's start, which must be a word
            # start: then the next window re-tokenises exactly and the overlap is exact.
            next_start = tokens.word_start_at_or_below(limit - overlap, start, need_cut_after=overlap)
            if next_start is None:
                break
            end = next_start + overlap
            count = self._count(tokens, start, end)
            if count <= size:
                return _Window(start, end, count), next_start
            limit = end - 1  # only for tokenizers whose words are not independent
        return self._window_inside_word(tokens, start, stop)

    def _window_inside_word(self, tokens: _Tokens, start: int, stop: int) -> tuple[_Window, int | None]:
        """The window at ``start`` when no word boundary fits: a word longer than the stride.

        Cuts at any boundary between tokens that do not share a character, verifying the count by
        tokenising the slice; the next window starts ``overlap`` tokens back where possible.
        """
        size, overlap = self._config.max_tokens, self._config.overlap
        end = min(start + size, stop)
        if end < stop:
            end = tokens.cut_below(end + 1, start) or end
        while (count := self._count(tokens, start, end)) > size:
            shorter = tokens.cut_below(end, start)
            if shorter is None:
                raise RuntimeError(
                    f"no slice of {tokens.text[tokens.starts[start] :][:40]!r} fits {size} tokens"
                )
            end = shorter
        if end == stop:
            return _Window(start, end, count), None
        next_start = (
            tokens.word_start_at_or_below(end - overlap, start)
            or tokens.cut_below(end - overlap + 1, start)
            or tokens.cut_above(start)
        )
        return _Window(start, end, count), next_start

    def _right_aligned(self, tokens: _Tokens, last: _Window, previous_first: int | None) -> _Window:
        """Move the parent's last window back so it is as full as the others (no tiny tail window).

        It keeps ending at the parent's end and starts on the earliest word start that leaves it at
        most ``max_tokens`` tokens and still after the previous window's start.
        """
        if previous_first is None or not tokens.is_word_start[last.first]:
            return last
        lowest = max(last.stop - self._config.max_tokens, previous_first + 1)
        first = tokens.word_start_at_or_above(lowest, last.first)
        if first == last.first:
            return last
        count = self._count(tokens, first, last.stop)
        return _Window(first, last.stop, count) if count <= self._config.max_tokens else last


@dataclass(frozen=True, slots=True)
class _Window:
    first: int  # token indices [first, stop)
    stop: int
    token_count: int  # by re-tokenising the window's text


@dataclass(frozen=True, slots=True)
class _Tokens:
    """One tokenisation of a text: char offsets per token, and where it may be cut.

    ``is_cut[i]``: tokens ``i-1`` and ``i`` do not share a character (a Hangul syllable's jamo do),
    so the text can be sliced between them. ``is_word_start[i]``: token ``i`` also begins a word of
    the pre-tokenizer. Both have ``size + 1`` entries; the text's end counts as both.
    """

    text: str
    starts: list[int]
    ends: list[int]
    is_cut: bytearray
    is_word_start: bytearray
    cuts: list[int]  # sorted indices where is_cut
    word_starts: list[int]  # sorted indices where is_word_start
    ids: list[int]  # token ids

    @property
    def size(self) -> int:
        return len(self.starts)

    @classmethod
    def build(
        cls,
        text: str,
        offsets: Sequence[tuple[int, int]],
        word_ids: Sequence[int | None],
        ids: Sequence[int] = (),
    ) -> _Tokens:
        starts = [start for start, _ in offsets]
        ends = [end for _, end in offsets]
        # Between tokens i-1 and i (0 < i < size); both ends of the text count as cut and word start.
        # Built with zip and compress (C loops): this runs over every token of every document.
        inner_cut = list(map(int.__ge__, starts[1:], ends[:-1]))
        inner_word = [
            cut and w != prev for cut, w, prev in zip(inner_cut, word_ids[1:], word_ids[:-1], strict=True)
        ]
        edge = [True] if starts else []
        is_cut = bytearray([True, *inner_cut, *edge])
        is_word_start = bytearray([True, *inner_word, *edge])
        positions = range(len(starts) + 1)
        cuts = list(itertools.compress(positions, is_cut))
        word_starts = list(itertools.compress(positions, is_word_start))
        return cls(text, starts, ends, is_cut, is_word_start, cuts, word_starts, list(ids))

    def token_at_or_after(self, char: int) -> int:
        """Index of the first token starting at or after character ``char``."""
        return bisect.bisect_left(self.starts, char)

    def cut_below(self, index: int, lowest: int) -> int | None:
        """The largest cut in ``(lowest, index)``, or None."""
        return _largest_in(self.cuts, lowest, index - 1)

    def cut_above(self, index: int) -> int | None:
        """The smallest cut after ``index``, or None."""
        position = bisect.bisect_right(self.cuts, index)
        return self.cuts[position] if position < len(self.cuts) else None

    def word_start_at_or_below(self, index: int, lowest: int, need_cut_after: int = 0) -> int | None:
        """The largest word start ``j`` in ``(lowest, index]`` with a cut at ``j + need_cut_after``."""
        position = bisect.bisect_right(self.word_starts, index) - 1
        while position >= 0 and (j := self.word_starts[position]) > lowest:
            if j + need_cut_after <= self.size and self.is_cut[j + need_cut_after]:
                return j
            position -= 1
        return None

    def word_start_at_or_above(self, index: int, highest: int) -> int:
        """The smallest word start in ``[index, highest]``; ``highest`` itself must be one."""
        position = bisect.bisect_left(self.word_starts, index)
        return min(self.word_starts[position], highest)


def _largest_in(sorted_values: list[int], lowest: int, highest: int) -> int | None:
    """The largest value ``v`` with ``lowest < v <= highest``, or None."""
    position = bisect.bisect_right(sorted_values, highest) - 1
    if position >= 0 and sorted_values[position] > lowest:
        return sorted_values[position]
    return None


# --- parents ----------------------------------------------------------------------------------------


def _parents(tokens: _Tokens, limit: int) -> list[tuple[int, int]]:
    """Token ranges ``[first, stop)`` of the parent sections, covering all tokens in order.

    Consecutive paragraphs are packed greedily while the parent stays within ``limit`` tokens; a
    paragraph over the limit becomes parents of its own, packed from its sentences, and a sentence
    over the limit is cut at word starts (inside a word only if one word exceeds the limit).
    """
    parents: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for first, stop in _paragraphs(tokens):
        if stop - first > limit:
            if current is not None:
                parents.append(current)
                current = None
            parents.extend(_pack(_sentence_bounds(tokens, first, stop, limit), limit))
        elif current is not None and stop - current[0] <= limit:
            current = (current[0], stop)
        else:
            if current is not None:
                parents.append(current)
            current = (first, stop)
    if current is not None:
        parents.append(current)
    return parents


def _paragraphs(tokens: _Tokens) -> list[tuple[int, int]]:
    """Token ranges of the blank-line separated paragraphs (paragraphs without tokens vanish)."""
    bounds = {0, tokens.size}
    for match in _PARAGRAPH_BREAK.finditer(tokens.text):
        bounds.add(tokens.token_at_or_after(match.end()))
    ordered = sorted(bounds)
    return [(a, b) for a, b in itertools.pairwise(ordered) if a < b]


def _sentence_bounds(tokens: _Tokens, first: int, stop: int, limit: int) -> list[int]:
    """Sorted cut points ``first, ..., stop`` at sentence starts, no two more than ``limit`` apart."""
    text = tokens.text[tokens.starts[first] : tokens.ends[stop - 1]]
    base = tokens.starts[first]
    bounds = [first]
    for match in _SENTENCE_END.finditer(text):
        index = tokens.token_at_or_after(base + match.end())
        if bounds[-1] < index < stop and tokens.is_word_start[index]:
            bounds.append(index)
    bounds.append(stop)
    result = [first]
    for bound in bounds[1:]:
        # A sentence over the limit is cut at word starts, or at any cut inside a giant word.
        while bound - result[-1] > limit:
            low, high = result[-1], result[-1] + limit
            result.append(
                _largest_in(tokens.word_starts, low, high) or _largest_in(tokens.cuts, low, high) or high
            )
        result.append(bound)
    return result


def _pack(bounds: list[int], limit: int) -> list[tuple[int, int]]:
    """Greedily merge consecutive pieces between ``bounds`` into ranges of at most ``limit`` tokens."""
    ranges: list[tuple[int, int]] = []
    first = previous = bounds[0]
    for bound in bounds[1:]:
        if bound - first > limit:
            ranges.append((first, previous))
            first = previous
        previous = bound
    ranges.append((first, previous))
    return ranges


def _tokenises_words_independently(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether a word's tokens never depend on the text around it (BERT's WordPiece pipeline).

    True for WordPiece behind the BERT pre-tokenizer (splits on whitespace and punctuation) with at
    most the per-character BERT normaliser. Other tokenizers (byte-level BPE, SentencePiece) attach
    spaces or word-initial markers to tokens, so every window of theirs is verified instead.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    return (
        isinstance(backend.model, models.WordPiece)
        and isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        and (backend.normalizer is None or isinstance(backend.normalizer, normalizers.BertNormalizer))
    )
