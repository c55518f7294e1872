"""Errors raised on bad input data.

Every loader and constructor in :mod:`robustrec.data` raises :class:`DataError` for input it cannot use, with a
message that names where the problem is (file, 1-based line, column) and the offending value, e.g.::

    DataError: /data/train.txt, line 17, column 3: item id must be a non-negative integer (got '12a')
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["DataError", "undecodable"]

_UNSET: Any = object()


class DataError(ValueError):
    """Input data that cannot be used: missing columns, bad ids, empty or malformed files.

    Attributes (``None`` when not applicable): ``source`` (file path or ``"<DataFrame>"``), ``line`` (1-based line
    or row number), ``column`` (column name or 1-based field number), ``value`` (the offending value).
    """

    def __init__(
        self,
        problem: str,
        *,
        source: object = None,
        line: int | None = None,
        column: object = None,
        value: Any = _UNSET,
        where: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.line = line
        self.column = column
        self.value = None if value is _UNSET else value
        location = []
        if self.source is not None:
            location.append(self.source)
        if where is not None:
            location.append(where)
        if line is not None:
            location.append(f"line {line}")
        if column is not None:
            location.append(f"column {column}" if isinstance(column, int) else f"column {column!r}")
        message = (", ".join(location) + ": " if location else "") + problem
        if value is not _UNSET:
            message += f" (got {_plain(value)!r})"
        super().__init__(message)


def _plain(value: Any) -> Any:
    """``value`` as the Python scalar it stands for when it is a numpy scalar (read from a file: ``nan``, ``7``, not
    ``np.float64(nan)``); anything else unchanged. numpy is only looked up, never imported here."""
    numpy = sys.modules.get("numpy")
    return value.item() if numpy is not None and isinstance(value, numpy.generic) else value


def undecodable(path) -> DataError:
    """DataError naming the file, the 1-based line and the first byte of a file that is not UTF-8 text (a binary
    file, or another encoding). Reads the file again, on this error path only, to find that byte exactly."""
    import gzip
    from pathlib import Path

    path = Path(path)
    with (gzip.open if path.suffix.lower() == ".gz" else open)(path, "rb") as handle:
        data = handle.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return DataError(f"not UTF-8 text: byte 0x{data[error.start]:02x} cannot be decoded (a binary file, or "
                         "another encoding: convert it to UTF-8)", source=path, line=data.count(b"\n", 0, error.start) + 1)
    return DataError("not UTF-8 text (convert it to UTF-8)", source=path)
