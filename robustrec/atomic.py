"""Atomic writes for both packages: a file is either absent, the old version, or complete — never half-written.

Each writer goes through :func:`atomic_write` (a temporary file beside the target, flushed, fsynced, then
renamed onto it). torch and matplotlib are imported only by the writers that need them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_torch(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))


def save_json(obj: Any, path: Path) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    atomic_write(path, lambda handle: handle.write(data))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def load_torch(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_figure(fig, path: Path, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
