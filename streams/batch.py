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
    dense: tuple[float, ...] = ()
    sparse_indices: tuple[int, ...] = ()
    sparse_values: tuple[float, ...] = ()


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
