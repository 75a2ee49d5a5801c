"""Token-aware chunking with overlap and parent sections (small-to-big retrieval).

Sizes are in tokens of the embedder's own tokenizer, so a chunk is never silently truncated by
the model: the :class:`Chunker` refuses a window that, with the model's two special tokens, would
not fit the model's limit. The text is tokenised once with character offsets, and every chunk
and parent is an exact substring of the input.

Parents are runs of whole paragraphs of at most ``parent_max_tokens`` (a longer paragraph is
split at sentence ends, or at token boundaries when a sentence alone is too long). Children are
sliding windows of ``max_tokens`` with ``overlap`` tokens shared by consecutive windows, made
within one parent, never across two. The last window of a parent ends at its last token and is
full-size when the parent allows, so there are no tiny tail windows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    """0..n-1 in document order, over the whole document."""
    text: str
    """Exactly ``input[start:end]``."""
    start: int
    end: int
    token_count: int
    """Tokens of the window (special tokens excluded)."""
    parent_index: int
    parent_text: str


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 128
    overlap: int = 32
    parent_max_tokens: int = 384


class Chunker:
    SPECIAL_TOKENS = 2  # [CLS] and [SEP] the model adds around every input

    def __init__(self, tokenizer: Any, config: ChunkingConfig, model_max_tokens: int) -> None:
        if config.max_tokens + self.SPECIAL_TOKENS > model_max_tokens:
            raise ValueError(
                f"max_tokens={config.max_tokens} plus {self.SPECIAL_TOKENS} special tokens exceeds the model's "
                f"limit of {model_max_tokens}: the model would silently truncate every full chunk"
            )
        if not 0 <= config.overlap < config.max_tokens:
            raise ValueError(f"overlap must be in [0, max_tokens), got {config.overlap}")
        if config.parent_max_tokens < config.max_tokens:
            raise ValueError("parent_max_tokens must be >= max_tokens")
        self.tokenizer = tokenizer
        self.config = config
        self.model_max_tokens = model_max_tokens

    @classmethod
    def from_model_path(cls, path: str, config: ChunkingConfig, model_max_tokens: int = 256) -> Chunker:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(path), config, model_max_tokens)

    def chunk(self, text: str) -> list[Chunk]:
        if not text.strip():
            return []
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]  # type: ignore[misc]
        if not offsets:
            return []
        chunks: list[Chunk] = []
        for parent_index, (ps, pe) in enumerate(self._parents(text, offsets)):
            parent_text = text[offsets[ps][0] : offsets[pe - 1][1]]
            for ws, we in self._windows(ps, pe):
                start, end = offsets[ws][0], offsets[we - 1][1]
                chunks.append(Chunk(len(chunks), text[start:end], start, end, we - ws, parent_index, parent_text))
        return chunks

    # --- parents ---------------------------------------------------------------------------------

    def _parents(self, text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Token ranges [start, end) of the parent sections, covering every token in order."""
        limit = self.config.parent_max_tokens
        paragraphs = self._paragraph_token_ranges(text, offsets)
        pieces: list[tuple[int, int]] = []
        for ps, pe in paragraphs:
            if pe - ps <= limit:
                pieces.append((ps, pe))
            else:
                pieces.extend(self._split_long(text, offsets, ps, pe))
        parents: list[tuple[int, int]] = []
        for ps, pe in pieces:  # greedily pack whole pieces into parents
            if parents and pe - parents[-1][0] <= limit:
                parents[-1] = (parents[-1][0], pe)
            else:
                parents.append((ps, pe))
        return parents

    @staticmethod
    def _paragraph_token_ranges(text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        breaks = [m.start() for m in _PARAGRAPH_BREAK.finditer(text)]
        ranges: list[tuple[int, int]] = []
        start, b = 0, 0
        for i, (cs, _) in enumerate(offsets):
            crossed = False
            while b < len(breaks) and breaks[b] < cs:
                b += 1
                crossed = True
            if crossed and i > start:
                ranges.append((start, i))
                start = i
        ranges.append((start, len(offsets)))
        return ranges

    def _split_long(self, text: str, offsets: list[tuple[int, int]], ps: int, pe: int) -> list[tuple[int, int]]:
        """Split a too-long paragraph at sentence ends; a too-long sentence at token boundaries."""
        limit = self.config.parent_max_tokens
        sentences: list[tuple[int, int]] = []
        s = ps
        for i in range(ps, pe):
            if _SENTENCE_END.search(text[offsets[i][0] : offsets[i][1]]):
                sentences.append((s, i + 1))
                s = i + 1
        if s < pe:
            sentences.append((s, pe))
        out: list[tuple[int, int]] = []
        for ss, se in sentences:
            while se - ss > limit:
                out.append((ss, ss + limit))
                ss += limit
            if ss < se:
                if out and se - out[-1][0] <= limit:
                    out[-1] = (out[-1][0], se)
                else:
                    out.append((ss, se))
        return out

    # --- windows ---------------------------------------------------------------------------------

    def _windows(self, ps: int, pe: int) -> list[tuple[int, int]]:
        size, stride = self.config.max_tokens, self.config.max_tokens - self.config.overlap
        if pe - ps <= size:
            return [(ps, pe)]
        out: list[tuple[int, int]] = []
        start = ps
        while start + size < pe:
            out.append((start, start + size))
            start += stride
        out.append((max(ps, pe - size), pe))  # full-size last window ending at the parent's end
        return out
