"""Registry helpers for tests: a promoted model version without a training run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from streamrag.sentence_model import default_model_path
from training.registry import ModelRegistry


def promote_copy_of_base(registry: ModelRegistry, tmp_path: Path) -> Any:
    """Register a copy of the base model's folder as a new version and promote it.

    Same vectors as the base model, but a new version, model id and collection: all that a
    re-index and an alias switch can tell apart, without the time a real fine-tuning run takes.
    Returns what :meth:`ModelRegistry.promote` returns (it publishes the ModelEvents when the
    registry has a models topic).
    """
    copy = tmp_path / "copy-of-base"
    shutil.copytree(default_model_path(), copy)
    recorded = registry.record_run(
        trigger=None, params={"kind": "copy of the base model"}, metrics={}, snapshot=None, model_dir=copy
    )
    assert recorded.version is not None
    return registry.promote(recorded.version)
