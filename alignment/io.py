"""Writing a run's outputs: atomic files and folders, staged and then published in one step.

A file or a folder appears complete under its final name, or not at all. ``train`` writes everything it
produces into a staging folder inside the run directory (:func:`staging_folder`) and, once training has
finished and passed its checks, moves it into place with :func:`publish` — the one step that makes results
visible.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from robustrec.atomic import atomic_write, follow_umask, temporaries_beside


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to a temporary file beside ``path``, then rename it onto ``path``."""
    text = json.dumps(data, indent=2, sort_keys=False, default=float) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it onto ``path``."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def save_pretrained_atomic(model, tokenizer, folder: str | os.PathLike) -> Path:
    """``save_pretrained`` the model and tokenizer into a temporary folder beside ``folder``, then rename.

    An existing ``folder`` is replaced only once the new one is complete. For a peft model only the adapter is
    saved (its ``save_pretrained``).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with temporaries_beside(folder) as prefix:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder.parent))
        follow_umask(tmp, directory=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _replace(tmp, folder)
    return folder


def staging_folder(run_dir: str | os.PathLike) -> Path:
    """A new empty folder inside ``run_dir`` (created if needed) to write a run's outputs into."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=run_dir))
    follow_umask(staging, directory=True)
    return staging


def publish(staging: str | os.PathLike, run_dir: str | os.PathLike, *, last: str | None = None) -> list[Path]:
    """Move every entry of ``staging`` into ``run_dir``, each replacing its namesake only once complete; the
    entry called ``last`` (a run's finished marker) goes last.

    Returns the published paths; ``staging`` is removed.
    """
    staging, run_dir = Path(staging), Path(run_dir)
    published = []
    for entry in sorted(staging.iterdir(), key=lambda path: (path.name == last, path.name)):
        target = run_dir / entry.name
        _replace(entry, target)
        published.append(target)
    staging.rmdir()
    return published


def _replace(source: Path, target: Path) -> None:
    """Rename ``source`` onto ``target``; an existing folder ``target`` is moved aside first, then deleted."""
    if target.is_dir():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)
