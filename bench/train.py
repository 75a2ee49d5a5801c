"""Training benchmark: one fine-tuning run of the embedder, timed, and its held-out gain.

Pairs come from real documents (Debian FAQ + man pages) exactly as the training pipeline makes
them from the store (:func:`training.dataset.make_pairs` on the pipeline's chunks), split by
document. Prints the run time and base vs fine-tuned recall@k / MRR on the held-out pairs.
``--save-pairs`` / ``--pairs`` let the same pairs be carried to a GPU machine.

    python bench/train.py --docs 80
    python bench/train.py --pairs pairs.json --model-path minilm --epochs 2   # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the streamrag CLI sets it (see app/cli.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.dataset import Chunk, Pair, make_pairs, split_pairs
from training.evaluate import evaluate_model
from training.finetune import finetune
from training.settings import TrainingOptions


def corpus_pairs(docs: int, opts: TrainingOptions) -> list[Pair]:
    from serving.eval.corpus import build_corpus
    from streamrag.sentence_model import default_model_path
    from streams.chunk import Chunker, ChunkingConfig
    from streams.clean import clean_text

    chunker = Chunker.from_model_path(str(default_model_path()), ChunkingConfig())
    chunks = []
    for d in build_corpus(max_docs=docs).documents:
        title, body = clean_text(d.title), clean_text(d.body)
        for c in chunker.chunk(f"{title}\n\n{body}"):
            chunks.append(Chunk(f"eval/{d.doc_id}", 1, c.index, title, c.text, ""))
    return make_pairs(chunks, opts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=80)
    ap.add_argument("--pairs", type=Path, help="load pairs from this JSON file instead of building them")
    ap.add_argument("--save-pairs", type=Path, help="write the pairs to this JSON file")
    ap.add_argument("--model-path", type=Path, help="base model folder (default: the packaged MiniLM)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    opts = TrainingOptions(epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    if args.pairs:
        pairs = [Pair(**p) for p in json.loads(args.pairs.read_text())]
    else:
        pairs = corpus_pairs(args.docs, opts)
    if args.save_pairs:
        args.save_pairs.write_text(json.dumps([asdict(p) for p in pairs]))
    train, heldout = split_pairs(pairs, opts)
    if args.model_path:
        base = args.model_path
    else:
        from streamrag.sentence_model import default_model_path

        base = default_model_path()
    print(f"pairs: {len(pairs)} ({len(train)} train, {len(heldout)} held out); epochs {args.epochs}, "
          f"batch {args.batch_size}, device {args.device}")  # fmt: skip
    before = evaluate_model(base, heldout, opts)
    out = Path(tempfile.mkdtemp(prefix="streamrag-train-")) / "model"
    t = time.perf_counter()
    result = finetune(base, train, out, opts)
    train_s = time.perf_counter() - t
    after = evaluate_model(out, heldout, opts)
    print(f"training run: {train_s:.1f} s wall ({result!r:.200})")
    print(f"held-out base:       {before!r:.300}")
    print(f"held-out fine-tuned: {after!r:.300}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
