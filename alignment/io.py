"""Atomic writes: a file or a folder appears complete under its final name, or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from robustrec.atomic import atomic_write


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to a temporary file beside ``path``, then rename it onto ``path``."""
    text = json.dumps(data, indent=2, sort_keys=False, default=float) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def save_pretrained_atomic(model, tokenizer, folder: str | os.PathLike) -> Path:
    """``save_pretrained`` the model and tokenizer into a temporary folder beside ``folder``, then rename.

    An existing ``folder`` is replaced only once the new one is complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
