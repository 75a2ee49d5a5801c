"""Fine-tuning the embedding model on (query, passage) pairs, contrastively, on CPU.

The loss is sentence-transformers' ``MultipleNegativesRankingLoss``: in a batch of ``n`` pairs each
query must score its own passage above the other ``n - 1`` (in-batch negatives), a softmax
cross-entropy over cosine similarities times ``loss_scale``. The loop is a plain PyTorch loop
rather than ``SentenceTransformerTrainer``: it needs no ``datasets``/Arrow stack, is seeded end to
end, and lets the batcher keep each document to one pair per batch, so overlapping chunks of one
document never act as each other's negatives.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.dataset import Pair
from training.settings import TrainingOptions, torch_device

log = logging.getLogger("streamrag.training")


@dataclass(frozen=True)
class FinetuneResult:
    path: Path
    pairs: int
    steps: int
    epochs: int
    seconds: float
    """Wall time of the optimisation (loading and saving excluded)."""
    mean_loss_first: float
    """Mean loss over the first quarter of the steps (falling to ``mean_loss_last`` shows learning)."""
    mean_loss_last: float
    """Mean loss over the last quarter of the steps."""


def batches(pairs: Sequence[Pair], batch_size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffled batches of at most ``batch_size`` with no document (and no query text) twice in a batch.

    Greedy: each pair goes to the first open batch without its document; every pair is used once.
    Batches of one pair are dropped: with no negative the loss is a constant zero.
    """
    order = list(pairs)
    rng.shuffle(order)
    open_batches: list[tuple[list[Pair], set[str]]] = []
    done: list[list[Pair]] = []
    for pair in order:
        for i, (batch, seen) in enumerate(open_batches):
            if pair.doc_key not in seen and pair.query not in seen:
                batch.append(pair)
                seen.update((pair.doc_key, pair.query))
                if len(batch) == batch_size:
                    done.append(batch)
                    del open_batches[i]
                break
        else:
            open_batches.append(([pair], {pair.doc_key, pair.query}))
    done.extend(b for b, _ in open_batches if len(b) > 1)
    return done


def finetune(base_path: Path, pairs: Sequence[Pair], out_dir: Path, opts: TrainingOptions) -> FinetuneResult:
    """Train a copy of the model at ``base_path`` on ``pairs`` and save it to ``out_dir`` (created).

    Deterministic for the same inputs and options on the same machine (seeded shuffling, dropout
    and initialisation). Raises ``ValueError`` when the pairs make no batch of two.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    if opts.torch_threads:
        torch.set_num_threads(opts.torch_threads)
    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)
    plan = [batches(pairs, opts.batch_size, rng) for _ in range(opts.epochs)]
    steps = sum(len(epoch) for epoch in plan)
    if steps == 0:
        raise ValueError(f"{len(pairs)} pairs make no training batch of two")
    model = SentenceTransformer(str(base_path), device=torch_device(opts.device), local_files_only=True)
    # Train in fp32 whatever the saved precision: plain fp16/bf16 optimisation overflows to NaN.
    model = model.float()
    loss_fn = MultipleNegativesRankingLoss(model, scale=opts.loss_scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(steps * opts.warmup_ratio), steps)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in plan:
        for batch in epoch:
            features = [
                _to(model.preprocess([p.query for p in batch]), model.device),
                _to(model.preprocess([p.passage for p in batch]), model.device),
            ]
            loss = loss_fn(features, torch.empty(0))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
    seconds = time.perf_counter() - start
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir), create_model_card=False)
    quarter = max(1, len(losses) // 4)
    log.info(
        "fine-tuned %d pairs in %d steps (%.1fs); loss %.3f -> %.3f",
        len(pairs),
        steps,
        seconds,
        sum(losses[:quarter]) / quarter,
        sum(losses[-quarter:]) / quarter,
    )
    return FinetuneResult(
        out_dir,
        len(pairs),
        steps,
        opts.epochs,
        seconds,
        sum(losses[:quarter]) / quarter,
        sum(losses[-quarter:]) / quarter,
    )


def _to(features: dict[str, Any], device: Any) -> dict[str, Any]:
    """Move a tokenised batch to the model's device (a no-op on CPU)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
