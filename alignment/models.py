"""Loading a policy and its tokenizer: the shipped default model or a local transformers checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT = "default"


def load_model(path: str | os.PathLike | None = None):
    """``(model, tokenizer)`` from local files only.

    Args:
        path: ``None`` or ``"default"`` for the shipped stories260K model (:mod:`alignment.llama2c`), else a
            folder written by ``save_pretrained`` (a model and its tokenizer).
    The tokenizer gets a pad token (its EOS) when it has none, as TRL requires.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .llama2c import DEFAULT_MODEL_DIR

    folder = DEFAULT_MODEL_DIR if path is None or str(path) == DEFAULT else Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a model folder (no config.json); pass 'default' or a save_pretrained folder")
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
