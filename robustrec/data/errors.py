"""Errors raised on bad input data.

Every loader and constructor in :mod:`robustrec.data` raises :class:`DataError` for input it cannot use, with a
message that names where the problem is (file, 1-based line, column) and the offending value, e.g.::

    DataError: /data/train.txt, line 17, column 3: item id must be a non-negative integer (got '12a')
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataError"]

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
            message += f" (got {value!r})"
        super().__init__(message)
