"""Loading a policy and its tokenizer from local files: the shipped default model or any causal-LM folder.

The default model (``"default"``) is Karpathy's stories260K TinyStories checkpoint (MIT, llama2.c), converted
to a transformers ``LlamaForCausalLM`` and shipped in ``alignment/default_model`` (converter and numpy
reference of llama2.c: ``scripts/llama2c.py``). Everything loads offline: a name that is not a local folder is
an error saying so.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The name of the shipped model.
DEFAULT = "default"

#: Folder of the converted stories260K model and tokenizer shipped inside the package.
DEFAULT_MODEL_DIR: Path = Path(__file__).resolve().parent / "default_model"

#: ``--torch-dtype`` values and the torch dtypes they name ("auto": the dtype stored in the checkpoint).
TORCH_DTYPES = ("auto", "float32", "bfloat16", "float16")


def model_folder(path: str | os.PathLike | None, *, marker: str = "config.json") -> Path:
    """The local folder of ``path`` (``None``/``"default"``: the shipped model); FileNotFoundError otherwise.

    ``marker`` is the file the folder must hold (``tokenizer_config.json`` for a tokenizer alone, e.g. beside a
    peft adapter).
    """
    if path is None or str(path) == DEFAULT:
        return DEFAULT_MODEL_DIR
    folder = Path(path)
    if (folder / marker).is_file():
        return folder
    if folder.exists():
        raise FileNotFoundError(f"{folder}: not a model folder (no {marker}); pass 'default' or a folder written "
                                "by save_pretrained")
    raise FileNotFoundError(
        f"model {str(path)!r} is not a local folder. Nothing is downloaded (this toolkit runs offline): fetch Hub "
        f"models on a machine with network, e.g. `huggingface-cli download {path} --local-dir DIR`, and pass DIR"
    )


def load_tokenizer(path: str | os.PathLike | None = None):
    """The tokenizer of a local model folder, with a pad token (its EOS) when it has none, as TRL requires."""
    from transformers import AutoTokenizer

    folder = model_folder(path, marker="tokenizer_config.json")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{folder}: the tokenizer has neither a pad nor an EOS token; add one to its files")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str | os.PathLike | None = None, *, dtype: str | None = None, **from_pretrained_kwargs):
    """``(model, tokenizer)`` from local files only.

    Args:
        path: ``None`` or ``"default"`` for the shipped stories260K model, else a folder written by
            ``save_pretrained`` (any causal LM: Llama, GPT-2, ...; its tokenizer in the same folder).
        dtype: one of :data:`TORCH_DTYPES`, or None for float32.
        from_pretrained_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (``attn_implementation``,
            ``quantization_config``, ...).
    The model's config gets the tokenizer's pad token id.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    folder = model_folder(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=_torch_dtype(dtype),
                                                     **from_pretrained_kwargs)
    except (SafetensorError, EOFError, RuntimeError) as error:  # a truncated or corrupt weights file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{folder}: the model weights are truncated or corrupt ({reason}); save or train the "
                         "model again") from None
    tokenizer = load_tokenizer(folder)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def check_finite(model, name: str) -> None:
    """Raise ValueError naming the first parameter of ``model`` that holds a NaN or an infinity."""
    import torch

    for parameter_name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            bad = int((~torch.isfinite(parameter)).sum())
            raise ValueError(f"{name}: the weights are not finite ({bad} NaN/inf values in {parameter_name}); "
                             "the model is unusable, train it again with a lower learning rate")


def _torch_dtype(dtype: str | None):
    import torch

    if dtype is None:
        return torch.float32
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"torch dtype must be one of {', '.join(TORCH_DTYPES)}, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)
