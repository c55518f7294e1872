"""Atomic writes for both packages: a file is either absent, the old version, or complete — never half-written.

Each writer goes through :func:`atomic_write` (a temporary file beside the target, flushed, fsynced, then
renamed onto it). Its readers (:func:`read_json`, :func:`load_torch`) name a damaged file and what to do about
it. torch and matplotlib are imported only by the functions that need them.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def follow_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would give it (0666/0777 minus the umask): ``mkstemp``
    and ``mkdtemp`` create 0600/0700 whatever the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


@contextmanager
def temporaries_beside(path: Path):
    """Yield a name prefix for temporary files and folders beside ``path`` (``<prefix>…tmp``) that only this block
    uses; when the block fails, every one of them is removed. Found by the prefix, not by a returned name: Ctrl-C
    can land inside ``mkstemp``/``mkdtemp`` after the file is created and before its name comes back."""
    prefix = f".{path.name}.{secrets.token_hex(4)}."
    try:
        yield prefix
    except BaseException:
        for temporary in path.parent.glob(glob.escape(prefix) + "*.tmp"):
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temporaries_beside(path) as prefix:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            follow_umask(tmp)
            os.replace(tmp, path)
    except BaseException as error:
        interrupt = _interrupt_behind(error)
        if interrupt is not None:  # Ctrl-C stays Ctrl-C: the target is untouched, the temporary file gone
            raise interrupt from None
        raise
    return path


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that ``error`` (not itself one) was raised while handling, if any: a writer's own
    cleanup can fail on the half-written file, e.g. ``torch.save``'s zip writer ("unexpected pos") when Ctrl-C
    lands mid-write, and that error would otherwise replace the interrupt."""
    if isinstance(error, KeyboardInterrupt):
        return None
    seen = error.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None


def save_torch(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))


def save_json(obj: Any, path: Path) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    atomic_write(path, lambda handle: handle.write(data))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


class UnreadableFileError(ValueError):
    """A file exists but cannot be read back (truncated, corrupt, or not what it should be)."""


def read_json(path: Path, *, keys: tuple[str, ...] = (), hint: str = "") -> dict:
    """The JSON object in ``path``, holding ``keys``; UnreadableFileError naming the file (and ``hint``: what to
    do about it) when it is truncated, corrupt, or lacks a key."""
    hint = f"; {hint}" if hint else ""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnreadableFileError(f"{path} is truncated or corrupt: not valid JSON ({error}){hint}") from None
    missing = [k for k in keys if not isinstance(value, dict) or k not in value]
    if not isinstance(value, dict) or missing:
        raise UnreadableFileError(f"{path} lacks {missing or 'a JSON object'}{hint}")
    return value


def load_torch(path: Path, *, hint: str = "") -> Any:
    """``torch.load`` of ``path`` (tensors and plain containers only) onto the CPU.

    Raises:
        FileNotFoundError: no such file. UnreadableFileError: a truncated or corrupt file, named, with ``hint``
            (what to do about it) appended.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableFileError(f"{path} is truncated or corrupt ({reason})" + (f"; {hint}" if hint else "")) \
            from None


def save_figure(fig, path: Path, *, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
