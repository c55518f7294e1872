"""Preference pairs: load, split HH-RLHF dialogues, validate, tokenise.

A *preference pair* is three texts: a ``prompt``, the ``chosen`` completion and the ``rejected`` one.
:func:`load_preference_pairs` reads them from

- JSON lines (``.jsonl``, ``.jsonl.gz``), a JSON list of objects (``.json``, ``.json.gz``), Parquet
  (``.parquet``), a :class:`pandas.DataFrame` or a :class:`datasets.Dataset`;
- in the *explicit* form (``prompt``, ``chosen``, ``rejected``: the completions exclude the prompt) or the
  *HH-RLHF* form (``chosen``, ``rejected``: whole dialogues sharing their beginning). An HH pair is split at the
  last ``"\\n\\nAssistant:"`` inside the longest common prefix of the two dialogues: everything up to and
  including that marker is the prompt, the rest of each dialogue is its completion.

Every row is validated: a missing key, a value that is not text, an empty (or blank) text, identical chosen
and rejected completions, or an HH pair without a shared assistant turn is an error naming the source and the
row (1-based: the line number for JSON lines, the position otherwise). With ``on_invalid="drop"`` such rows
are removed instead, and :class:`PreferencePairs` keeps each removed row with its reason; nothing is dropped
without being counted.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

logger = logging.getLogger(__name__)

COLUMNS = ("prompt", "chosen", "rejected")
HH_ASSISTANT_MARKER = "\n\nAssistant:"
FORMATS = ("auto", "explicit", "hh")
ON_INVALID = ("raise", "drop")


class PreferenceDataError(ValueError):
    """A preference source, or one of its rows, is unusable; the message names the source and the row."""


@dataclass(frozen=True)
class InvalidRow:
    """One rejected row: ``row`` is 1-based (the line number for JSON lines)."""

    row: int
    reason: str


@dataclass(frozen=True)
class PreferencePairs:
    """Validated preference pairs.

    Attributes:
        pairs: DataFrame with string columns ``prompt``, ``chosen``, ``rejected`` (n_kept rows), plus a
            ``row`` column holding each pair's 1-based row in the source.
        source: where the pairs came from (a path, ``"DataFrame"`` or ``"Dataset"``).
        n_read: rows read from the source (kept + invalid).
        invalid: the rows dropped with ``on_invalid="drop"`` (empty with ``"raise"``).
    """

    pairs: pd.DataFrame
    source: str
    n_read: int
    invalid: tuple[InvalidRow, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.pairs)

    def summary(self) -> str:
        """One line: rows read, kept and dropped, with the drop reasons counted."""
        text = f"{self.source}: read {self.n_read} rows, kept {len(self.pairs)}, dropped {len(self.invalid)}"
        if self.invalid:
            reasons = Counter(item.reason for item in self.invalid)
            text += " (" + "; ".join(f"{reason}: {count}" for reason, count in reasons.most_common()) + ")"
        return text

    def to_dataset(self):
        """A :class:`datasets.Dataset` with columns ``prompt``, ``chosen``, ``rejected`` (what TRL expects)."""
        from datasets import Dataset

        return Dataset.from_pandas(self.pairs[list(COLUMNS)], preserve_index=False)


def split_hh_dialogues(chosen: str, rejected: str, *, marker: str = HH_ASSISTANT_MARKER) -> tuple[str, str, str]:
    """Split two whole dialogues into ``(prompt, chosen_completion, rejected_completion)``.

    The prompt is the longest common prefix of both dialogues cut right after its last ``marker``.
    Raises ValueError when the common prefix holds no ``marker``.
    """
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(marker)
    if cut < 0:
        raise ValueError(f"the two dialogues share no {marker!r} turn to split the prompt at")
    end = cut + len(marker)
    return chosen[:end], chosen[end:], rejected[end:]


def load_preference_pairs(
    source: str | os.PathLike | pd.DataFrame | Any,
    *,
    format: Literal["auto", "explicit", "hh"] = "auto",
    on_invalid: Literal["raise", "drop"] = "raise",
) -> PreferencePairs:
    """Read and validate preference pairs.

    Args:
        source: a path (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``, ``.parquet``), a DataFrame or a
            ``datasets.Dataset``.
        format: ``"explicit"`` (prompt/chosen/rejected), ``"hh"`` (whole dialogues in chosen/rejected) or
            ``"auto"``: explicit when the source has a ``prompt`` key, HH otherwise.
        on_invalid: ``"raise"`` stops at the first invalid row with a :class:`PreferenceDataError`;
            ``"drop"`` removes invalid rows, records them in ``PreferencePairs.invalid`` and logs the count.

    Returns:
        :class:`PreferencePairs` (pairs: DataFrame of n_kept rows).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    name, records = _records(source)

    kept: list[dict[str, Any]] = []
    invalid: list[InvalidRow] = []
    n_read = 0
    resolved = None if format == "auto" else format
    for row, record in records:
        n_read += 1
        if resolved is None:
            resolved = "explicit" if isinstance(record, Mapping) and "prompt" in record else "hh"
        try:
            kept.append({**_validated(record, resolved), "row": row})
        except ValueError as error:
            if on_invalid == "raise":
                raise PreferenceDataError(f"{name}, row {row}: {error}") from None
            invalid.append(InvalidRow(row, str(error)))
    if n_read == 0:
        raise PreferenceDataError(f"{name}: no rows")
    if not kept:
        raise PreferenceDataError(f"{name}: all {n_read} rows are invalid, e.g. row {invalid[0].row}: {invalid[0].reason}")
    result = PreferencePairs(
        pairs=pd.DataFrame(kept, columns=[*COLUMNS, "row"]),
        source=name,
        n_read=n_read,
        invalid=tuple(invalid),
    )
    if invalid:
        logger.warning("dropped invalid preference pairs: %s", result.summary())
    return result


def tokenize_pairs(pairs: PreferencePairs | pd.DataFrame, tokenizer) -> pd.DataFrame:
    """Token ids of each pair, the way TRL's DPOTrainer splits them.

    The prompt is encoded alone and with each completion; the completion ids are what follows the common
    prefix of those encodings. Returns a DataFrame (n rows) with list columns ``prompt_ids``, ``chosen_ids``,
    ``rejected_ids`` and int columns ``prompt_len``, ``chosen_len``, ``rejected_len``.
    """
    frame = pairs.pairs if isinstance(pairs, PreferencePairs) else pairs
    prompts = list(frame["prompt"])
    prompt_ids = tokenizer(prompts)["input_ids"]
    out: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    full = {
        key: tokenizer([p + c for p, c in zip(prompts, frame[key], strict=True)])["input_ids"]
        for key in ("chosen", "rejected")
    }
    for i, ids in enumerate(prompt_ids):
        cut = min(_common_prefix_length(ids, full["chosen"][i]), _common_prefix_length(ids, full["rejected"][i]))
        out["prompt_ids"].append(list(ids[:cut]))
        out["chosen_ids"].append(list(full["chosen"][i][cut:]))
        out["rejected_ids"].append(list(full["rejected"][i][cut:]))
    result = pd.DataFrame(out)
    for key in ("prompt", "chosen", "rejected"):
        result[f"{key}_len"] = result[f"{key}_ids"].map(len)
    return result


# -- internals -------------------------------------------------------------------------------------------------


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _validated(record: Any, form: str) -> dict[str, str]:
    """The row's prompt/chosen/rejected texts; ValueError with a short reason when invalid."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected an object with keys {', '.join(COLUMNS)}, got {type(record).__name__}")
    keys = COLUMNS if form == "explicit" else ("chosen", "rejected")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"missing key {', '.join(repr(k) for k in missing)}")
    for key in keys:
        value = record[key]
        if not isinstance(value, str):
            raise ValueError(f"{key!r} is {type(value).__name__}, expected text")
    if form == "hh":
        if record["chosen"] == record["rejected"]:
            raise ValueError("'chosen' and 'rejected' are identical")
        prompt, chosen, rejected = split_hh_dialogues(record["chosen"], record["rejected"])
    else:
        prompt, chosen, rejected = record["prompt"], record["chosen"], record["rejected"]
    for key, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise ValueError(f"empty {key!r}" + (" response" if key != "prompt" else ""))
    if chosen == rejected:
        raise ValueError("'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _records(source: Any) -> tuple[str, Iterable[tuple[int, Any]]]:
    """``(name, iterator of (1-based row, record))`` for any supported source."""
    if isinstance(source, pd.DataFrame):
        return "DataFrame", _enumerate_frame(source, "DataFrame")
    if type(source).__name__ == "Dataset" and hasattr(source, "column_names"):
        return "Dataset", _enumerate_frame(source.to_pandas(), "Dataset")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, a pandas DataFrame or a datasets.Dataset, got {type(source).__name__}"
        )
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".jsonl":
        return str(path), _read_json_lines(path)
    if kind == ".json":
        return str(path), _read_json_list(path)
    if kind == ".parquet":
        return str(path), _enumerate_frame(pd.read_parquet(path), str(path))
    raise PreferenceDataError(f"{path}: unknown file type; expected .jsonl[.gz], .json[.gz] or .parquet")


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise PreferenceDataError(f"{path}, row {line_number}: not valid JSON ({error.msg})") from None


def _read_json_list(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise PreferenceDataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, list):
        raise PreferenceDataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    yield from enumerate(data, start=1)


def _enumerate_frame(frame: pd.DataFrame, name: str) -> Iterator[tuple[int, Any]]:
    if "chosen" not in frame.columns or "rejected" not in frame.columns:
        raise PreferenceDataError(
            f"{name}: needs columns 'chosen' and 'rejected' (and optionally 'prompt'); found {list(frame.columns)}"
        )
    columns = [c for c in COLUMNS if c in frame.columns]
    for position, values in enumerate(frame[columns].itertuples(index=False, name=None), start=1):
        record = {}
        for key, value in zip(columns, values, strict=True):
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue  # a missing cell reads as a missing key
            record[key] = value
        yield position, record
