"""The unit that flows through the dataflow: one micro-batch of one topic-partition.

A batch stays whole from input to commit, so the offset committed after it covers exactly the
events whose effects (index writes, dead letters, feature records) are done. Steps return new
batches (``dataclasses.replace``); nothing is mutated in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrag.contracts import DeadLetter, DocumentEvent


@dataclass(frozen=True, slots=True)
class Sourced:
    """A valid event and the coordinates of the message it came from."""

    event: DocumentEvent
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ChunkVectors:
    index: int
    text: str
    parent_index: int
    parent_text: str
    token_ids: tuple[int, ...] | None = None
    """The chunker's token ids of ``text`` when known (see :class:`streams.chunk.Chunk`)."""
    header: str = ""
    """Embedded before ``text`` (the document's title, ``chunk_title="every"``) but not stored as
    part of it: the chunk is found by its document's title words, and ``text`` stays an exact
    slice of the document."""
    header_ids: tuple[int, ...] | None = None
    """The token ids of ``header`` when ``token_ids`` is known too."""
    dense: tuple[float, ...] = ()
    sparse_indices: tuple[int, ...] = ()
    sparse_values: tuple[float, ...] = ()

    @property
    def embedded_text(self) -> str:
        """What the model and the sparse encoding read: the header, a line break, the text."""
        return f"{self.header}\n{self.text}" if self.header else self.text

    @property
    def embedded_ids(self) -> tuple[int, ...] | None:
        """The token ids of :attr:`embedded_text` when known without tokenising it (a line break
        adds no token), else None."""
        if not self.header:
            return self.token_ids
        if self.header_ids is None or self.token_ids is None:
            return None
        return self.header_ids + self.token_ids


@dataclass(frozen=True, slots=True)
class PreparedDoc:
    """A document change ready to write: a delete, or an upsert with its embedded chunks."""

    src: Sourced
    title: str = ""
    body: str = ""
    chunks: tuple[ChunkVectors, ...] = ()


@dataclass(frozen=True, slots=True)
class Work:
    topic: str
    partition: int
    next_offset: int
    """The offset to commit once this batch is done (last offset + 1)."""
    received: int
    seq: int = 0
    """The source batch's number in its partition (:attr:`RawBatch.seq`): the commit order."""
    events: tuple[Sourced, ...] = ()
    dead: tuple[DeadLetter, ...] = ()
    tombstones: int = 0
    fenced: int = 0
    docs: tuple[PreparedDoc, ...] = ()
    written_chunks: int = 0
