"""Preference pairs: load, split HH-RLHF dialogues, validate, convert to chat messages.

A *preference pair* is a ``prompt``, the ``chosen`` completion and the ``rejected`` one, either as texts or as
chat messages (lists of ``{"role": ..., "content": ...}``, the conversational form of TRL's preference datasets).
:func:`load_preference_pairs` reads them from

- JSON lines (``.jsonl``, ``.jsonl.gz``), a JSON list of objects (``.json``, ``.json.gz``), Parquet
  (``.parquet``), a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict), a
  :class:`pandas.DataFrame`, a :class:`datasets.Dataset` or a :class:`datasets.DatasetDict` (pick a split);
- in the *explicit* form (``prompt``, ``chosen``, ``rejected``: the completions exclude the prompt) or the
  *HH-RLHF* form (``chosen``, ``rejected`` only: whole dialogues sharing their beginning). An HH text pair is
  split at the last ``"\\n\\nAssistant:"`` inside the longest common prefix of the two dialogues: everything up to
  and including that marker is the prompt, the rest of each dialogue is its completion. A pair of whole message
  lists is split after their longest common run of messages.

With ``hh_as_messages=True`` HH text pairs become chat messages (``Human:`` turns are ``user`` messages,
``Assistant:`` turns ``assistant`` ones), so that a tokenizer's chat template applies to them.

Every row is validated: a missing key, a value that is neither text nor a message list, an empty (or blank)
text, identical chosen and rejected completions, or an HH pair without a shared assistant turn is an error
naming the source and the row (1-based: the line number for JSON lines, the position otherwise). With
``on_invalid="drop"`` such rows are removed instead, and :class:`PreferencePairs` keeps each removed row with its
reason; nothing is dropped without being counted.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .losses import check_flip_rate

logger = logging.getLogger(__name__)

COLUMNS = ("prompt", "chosen", "rejected")
#: An optional column: the pair's own flip rate ε_i in [0, 0.5), for ``flip_rate="per-pair"`` (kept when present).
PAIR_FLIP_RATE = "flip_rate"
HH_ASSISTANT_MARKER = "\n\nAssistant:"
#: The row forms :func:`load_preference_pairs` reads ("auto": explicit when a row has a ``prompt``, else HH).
PAIR_FORMATS = ("auto", "explicit", "hh", "annotated")
#: What every command that reads pairs does with an invalid row (``--on-invalid``).
ON_INVALID = ("raise", "drop")
#: The form of annotated pairs (``PAIR_FORMATS``), and why an annotated pair can be unusable.
ANNOTATED = "annotated"
NO_PREFERENCE = "the annotators give no usable preference (ties, or a split leaving ε_i above 0.4)"
ANNOTATOR_COLUMN = re.compile(r"annotator\d+")

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


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
        pairs: DataFrame (n_kept rows) with columns ``prompt``, ``chosen``, ``rejected`` (all texts, or all
            message lists), ``flip_rate`` when the source gives each pair's ε_i (or annotators), and ``row``, each
            pair's 1-based row in the source.
        source: where the pairs came from (a path, ``"DataFrame"``, ``"Dataset"`` or ``"DatasetDict[split]"``).
        n_read: rows read from the source (kept + invalid).
        invalid: the rows dropped with ``on_invalid="drop"`` (empty with ``"raise"``).
        annotations: for annotated pairs, the Dawid–Skene fit over all read rows
            (:class:`alignment.flip_rate.PairFlipRates`: the flip rate of one annotation with its interval, and
            ``label_flip_rate``, the expected share of flipped labels among the oriented pairs); else None.
    """

    pairs: pd.DataFrame
    source: str
    n_read: int
    invalid: tuple[InvalidRow, ...] = field(default=())
    annotations: Any = None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def conversational(self) -> bool:
        """True when the pairs are chat messages rather than texts."""
        return len(self.pairs) > 0 and isinstance(self.pairs["chosen"].iloc[0], list)

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

        columns = [*COLUMNS, *([PAIR_FLIP_RATE] if PAIR_FLIP_RATE in self.pairs.columns else [])]
        return Dataset.from_list(self.pairs[columns].to_dict("records"))


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


def hh_to_messages(text: str, *, first_role: str = "user") -> list[dict[str, str]]:
    """The turns of an HH-RLHF text as chat messages.

    ``"\n\nHuman: hi\n\nAssistant: hello"`` gives ``[{"role": "user", "content": "hi"}, {"role": "assistant",
    "content": "hello"}]``; text before the first marker is a message of ``first_role`` (a completion starts
    inside an assistant turn). A trailing empty ``Assistant:`` turn (the end of an HH prompt) is left out: the
    chat template's generation prompt stands for it.
    """
    parts = _HH_TURN.split(text)
    messages = []
    if parts[0].strip():
        messages.append({"role": first_role, "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": _HH_ROLES[role], "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def load_preference_pairs(
    source: str | os.PathLike | pd.DataFrame | Any,
    *,
    format: Literal["auto", "explicit", "hh", "annotated"] = "auto",
    on_invalid: Literal["raise", "drop"] = "raise",
    split: str | None = None,
    hh_as_messages: bool = False,
) -> PreferencePairs:
    """Read and validate preference pairs.

    Args:
        source: a path (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``, ``.parquet``, or a ``save_to_disk``
            folder), a DataFrame, a ``datasets.Dataset`` or a ``datasets.DatasetDict``.
        format: one of :data:`PAIR_FORMATS`: ``"explicit"`` (prompt/chosen/rejected), ``"hh"`` (whole dialogues
            in chosen/rejected), ``"annotated"`` (two responses judged by several annotators: ``prompt`` or
            ``instruction`` [+ ``input``], ``response1``, ``response2``, ``annotator1``, ``annotator2``, ... coded
            as PandaLM's: 1 = response1 better, 2 = response2 better, 0 = tie; each pair is oriented by its most
            probable preference under Dawid–Skene and gets its own ``flip_rate``, see
            :func:`alignment.flip_rate.pair_flip_rates_from_annotations`; pairs whose annotators give no usable
            preference are invalid rows) or ``"auto"``: annotated when the first row has two annotator
            columns, explicit when it has a ``prompt`` key, HH otherwise.
        on_invalid: one of :data:`ON_INVALID`: ``"raise"`` stops at the first invalid row with a
            :class:`PreferenceDataError`; ``"drop"`` removes invalid rows, records them in
            ``PreferencePairs.invalid`` and logs the count.
        split: the split of a DatasetDict (needed when it has more than one).
        hh_as_messages: turn HH text pairs into chat messages (:func:`hh_to_messages`).

    Returns:
        :class:`PreferencePairs` (pairs: DataFrame of n_kept rows).
    """
    if format not in PAIR_FORMATS:
        raise ValueError(f"format must be one of {PAIR_FORMATS}, got {format!r}")
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    name, records = _records(source, split)

    kept: list[dict[str, Any]] = []
    invalid: list[InvalidRow] = []
    n_read = 0
    resolved = None if format == "auto" else format
    conversational = None
    for row, record in records:
        n_read += 1
        if resolved is None:
            resolved = _detect_form(record)
        try:
            if resolved == ANNOTATED:
                kept.append({**_validated_annotated(record), "row": row})
                continue
            pair = _validated(record, resolved, hh_as_messages)
            is_messages = isinstance(pair["chosen"], list)
            if conversational is None:
                conversational = is_messages
            elif is_messages != conversational:
                raise ValueError("mixes text and message-list pairs: "
                                 + ("earlier rows are texts" if not conversational else "earlier rows are messages"))
            if PAIR_FLIP_RATE in record:
                pair[PAIR_FLIP_RATE] = _pair_flip_rate(record[PAIR_FLIP_RATE])
            elif kept and PAIR_FLIP_RATE in kept[0]:
                raise ValueError(f"no {PAIR_FLIP_RATE!r}, which earlier rows have")
            kept.append({**pair, "row": row})
        except ValueError as error:
            if on_invalid == "raise":
                raise PreferenceDataError(f"{name}, row {row}: {error}") from None
            invalid.append(InvalidRow(row, str(error)))
    if n_read == 0:
        raise PreferenceDataError(f"{name}: no rows")
    annotations = None
    if resolved == ANNOTATED and kept:
        kept, unusable, annotations = _oriented_by_annotators(kept)
        for row in unusable:
            if on_invalid == "raise":
                raise PreferenceDataError(f"{name}, row {row}: {NO_PREFERENCE}")
            invalid.append(InvalidRow(row, NO_PREFERENCE))
    if not kept:
        raise PreferenceDataError(f"{name}: all {n_read} rows are invalid, e.g. row {invalid[0].row}: {invalid[0].reason}")
    extra = [PAIR_FLIP_RATE] if PAIR_FLIP_RATE in kept[0] else []
    result = PreferencePairs(
        pairs=pd.DataFrame(kept, columns=[*COLUMNS, *extra, "row"]),
        source=name,
        n_read=n_read,
        invalid=tuple(sorted(invalid, key=lambda item: item.row)),
        annotations=annotations,
    )
    if invalid:
        logger.warning("dropped invalid preference pairs: %s", result.summary())
    return result


def pairs_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with message lists replaced by their contents joined by blank lines (texts stay as they are).

    For consumers that read words, such as the flip-rate scorer of :mod:`alignment.flip_rate`.
    """
    def text(value):
        return "\n\n".join(m["content"] for m in value) if isinstance(value, list) else value

    out = frame.copy()
    for key in COLUMNS:
        if key in out.columns:
            out[key] = out[key].map(text)
    return out


# -- internals -------------------------------------------------------------------------------------------------


def _detect_form(record: Any) -> str:
    if isinstance(record, Mapping):
        if sum(bool(ANNOTATOR_COLUMN.fullmatch(str(key))) for key in record) >= 2:
            return ANNOTATED
        if "prompt" in record:
            return "explicit"
    return "hh"


def _validated_annotated(record: Any) -> dict[str, Any]:
    """An annotated row's prompt, two responses and annotator codes (PandaLM's: 0 tie, 1 first, 2 second)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected an object with response1, response2, annotator1, ..., got {type(record).__name__}")
    if "prompt" in record:
        prompt = record["prompt"]
    else:
        prompt = "\n\n".join(str(record[key]) for key in ("instruction", "input") if str(record.get(key) or "").strip())
    missing = [key for key in ("response1", "response2") if key not in record]
    if missing:
        raise ValueError(f"missing key {', '.join(repr(k) for k in missing)}")
    first, second = record["response1"], record["response2"]
    for key, value in (("prompt", prompt), ("response1", first), ("response2", second)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"empty or non-text {key!r}")
    if first == second:
        raise ValueError("'response1' and 'response2' are identical")
    columns = sorted((k for k in record if ANNOTATOR_COLUMN.fullmatch(str(k))), key=lambda k: int(str(k)[9:]))
    codes = []
    for key in columns:
        value = record[key]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            codes.append(np.nan)  # a missing annotation
        elif value in (0, 1, 2):
            codes.append(int(value))
        else:
            raise ValueError(f"{key!r} must be 0 (tie), 1 (response1 better) or 2 (response2 better), got {value!r}")
    return {"prompt": prompt, "first": first, "second": second, "codes": codes}


def _oriented_by_annotators(rows: list[dict]) -> tuple[list[dict], list[int], Any]:
    """``(pairs, unusable rows, PairFlipRates)``: each annotated row oriented by its most probable preference
    with its own flip rate (:func:`alignment.flip_rate.pair_flip_rates_from_annotations`)."""
    from robustrec.noise import preference_codes

    from .flip_rate import pair_flip_rates_from_annotations

    width = max(len(row["codes"]) for row in rows)
    raw = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        raw[i, : len(row["codes"])] = row["codes"]
    rates = pair_flip_rates_from_annotations(preference_codes(raw, first=1, second=2, tie=0))
    usable = rates.usable()
    pairs = []
    for row, keep, label, rate in zip(rows, usable, rates.labels, rates.rates):
        if keep:
            chosen, rejected = (row["first"], row["second"]) if label == 1 else (row["second"], row["first"])
            pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected,
                          PAIR_FLIP_RATE: float(rate), "row": row["row"]})
    return pairs, [row["row"] for row, keep in zip(rows, usable) if not keep], rates


def _pair_flip_rate(value: Any) -> float:
    """A pair's ε_i as a float in [0, 0.5); ValueError naming the column otherwise."""
    try:
        return check_flip_rate(value)
    except ValueError as error:
        raise ValueError(f"{PAIR_FLIP_RATE!r}: {error}") from None


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    """``value`` as a list of ``{"role", "content"}`` dicts; ValueError when it is not one."""
    if isinstance(value, np.ndarray):  # Parquet and datasets return arrays of dicts
        value = value.tolist()
    messages = []
    for i, message in enumerate(value, start=1):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"{key!r} message {i} is not an object with text 'role' and 'content'")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _is_message_list(value: Any) -> bool:
    return isinstance(value, (list, np.ndarray)) and len(value) > 0 and all(isinstance(m, Mapping) for m in value)


def _validated(record: Any, form: str, hh_as_messages: bool) -> dict[str, Any]:
    """The row's prompt/chosen/rejected (texts or message lists); ValueError with a short reason when invalid."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected an object with keys {', '.join(COLUMNS)}, got {type(record).__name__}")
    keys = COLUMNS if form == "explicit" else ("chosen", "rejected")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"missing key {', '.join(repr(k) for k in missing)}")
    if all(_is_message_list(record[key]) for key in keys):
        return _validated_messages({key: _messages(record[key], key) for key in keys}, form)
    for key in keys:
        value = record[key]
        if not isinstance(value, str):
            raise ValueError(f"{key!r} is {type(value).__name__}, expected text or a list of messages")
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
    if form == "hh" and hh_as_messages:
        return _validated_messages({
            "prompt": hh_to_messages(prompt),
            "chosen": hh_to_messages(chosen, first_role="assistant"),
            "rejected": hh_to_messages(rejected, first_role="assistant"),
        }, "explicit")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _validated_messages(pair: dict[str, list], form: str) -> dict[str, list]:
    if form == "hh":
        chosen, rejected = pair["chosen"], pair["rejected"]
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        pair = {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}
    for key in COLUMNS:
        if not pair[key]:
            raise ValueError(f"empty {key!r}" + (" (the two conversations share no first message)"
                                                 if key == "prompt" else " response"))
        if not pair[key][-1]["content"].strip() or not pair[key][0]["content"].strip():
            raise ValueError(f"empty {key!r}" + (" message" if key == "prompt" else " response"))
    if pair["chosen"] == pair["rejected"]:
        raise ValueError("'chosen' and 'rejected' are identical")
    return pair


def _records(source: Any, split: str | None) -> tuple[str, Iterable[tuple[int, Any]]]:
    """``(name, iterator of (1-based row, record))`` for any supported source."""
    if isinstance(source, pd.DataFrame):
        return "DataFrame", _enumerate_frame(source, "DataFrame")
    if _is_dataset_dict(source):
        return _dataset_dict_records(source, split, "DatasetDict")
    if _is_dataset(source):
        if split is not None:
            raise PreferenceDataError(f"split {split!r} given, but the source is a single Dataset without splits")
        return "Dataset", _enumerate_frame(source.to_pandas(), "Dataset")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "source must be a path, a pandas DataFrame or a datasets Dataset/DatasetDict, got "
            f"{type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        return _saved_dataset_records(path, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"preference data not found: {path}"
            + (" (Hub data sets are not downloaded: this toolkit runs offline; save the data set with datasets' "
               "save_to_disk on a machine with network and pass that folder)" if _looks_like_hub_name(source) else "")
        )
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if split is not None:
        raise PreferenceDataError(f"{path}: split {split!r} given, but a {kind or 'plain'} file has no splits")
    if kind == ".jsonl":
        return str(path), _read_json_lines(path)
    if kind == ".json":
        return str(path), _read_json_list(path)
    if kind == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a corrupt or truncated file
            raise PreferenceDataError(f"{path}: cannot read Parquet ({' '.join(str(error).split())})") from None
        return str(path), _enumerate_frame(frame, str(path))
    raise PreferenceDataError(
        f"{path}: unknown file type; expected .jsonl[.gz], .json[.gz], .parquet or a datasets save_to_disk folder"
    )


def _looks_like_hub_name(source: Any) -> bool:
    text = str(source)
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", text)) and not text.endswith(
        (".jsonl", ".json", ".gz", ".parquet"))


def _is_dataset(source: Any) -> bool:
    return type(source).__name__ == "Dataset" and hasattr(source, "column_names")


def _is_dataset_dict(source: Any) -> bool:
    return type(source).__name__ == "DatasetDict" and hasattr(source, "keys")


def _dataset_dict_records(data, split: str | None, name: str) -> tuple[str, Iterable[tuple[int, Any]]]:
    splits = list(data.keys())
    if split is None:
        if len(splits) != 1:
            raise PreferenceDataError(f"{name} has splits {', '.join(splits)}: choose one (--data-split)")
        split = splits[0]
    if split not in splits:
        raise PreferenceDataError(f"{name} has no split {split!r}; it has {', '.join(splits)}")
    label = f"{name}[{split}]"
    return label, _enumerate_frame(data[split].to_pandas(), label)


def _saved_dataset_records(path: Path, split: str | None) -> tuple[str, Iterable[tuple[int, Any]]]:
    if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        raise PreferenceDataError(f"{path}: a folder, but not one written by datasets' save_to_disk")
    from datasets import load_from_disk

    data = load_from_disk(str(path))
    if _is_dataset_dict(data):
        return _dataset_dict_records(data, split, str(path))
    if split is not None:
        raise PreferenceDataError(f"{path}: split {split!r} given, but the folder holds a single Dataset")
    return str(path), _enumerate_frame(data.to_pandas(), str(path))


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


NEWLINE = b"\n"


def _unreadable(path: Path, error: Exception) -> PreferenceDataError:
    """The error for a file that is not (gzipped) UTF-8 text: binary, another encoding, or a broken gzip. For
    undecodable text the file is read again (on this error path only) to name the row of the first bad byte:
    the decoder works on whole chunks, ahead of the lines handed out."""
    if not isinstance(error, UnicodeDecodeError):
        return PreferenceDataError(f"{path}: not a readable gzip file ({error})")
    with (gzip.open if path.suffix.lower() == ".gz" else open)(path, "rb") as handle:
        data = handle.read()
    try:
        data.decode("utf-8")
        row = ""
    except UnicodeDecodeError as located:
        row = f", row {data.count(NEWLINE, 0, located.start) + 1}"
    return PreferenceDataError(f"{path}{row}: not UTF-8 text (a binary file, or another encoding: convert it to "
                               "UTF-8)")


def _read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise PreferenceDataError(f"{path}, row {line_number}: not valid JSON ({error.msg})") from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise _unreadable(path, error) from None


def _read_json_list(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise PreferenceDataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
            raise _unreadable(path, error) from None
    if not isinstance(data, list):
        raise PreferenceDataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    yield from enumerate(data, start=1)


def _enumerate_frame(frame: pd.DataFrame, name: str) -> Iterator[tuple[int, Any]]:
    annotated = sum(bool(ANNOTATOR_COLUMN.fullmatch(str(c))) for c in frame.columns) >= 2
    if not annotated and ("chosen" not in frame.columns or "rejected" not in frame.columns):
        raise PreferenceDataError(
            f"{name}: needs columns 'chosen' and 'rejected' (and optionally 'prompt'), or response1, response2 and "
            f"annotator columns; found {list(frame.columns)}"
        )
    columns = list(frame.columns) if annotated else [c for c in (*COLUMNS, PAIR_FLIP_RATE) if c in frame.columns]
    for position, values in enumerate(frame[columns].itertuples(index=False, name=None), start=1):
        record = {}
        for key, value in zip(columns, values, strict=True):
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue  # a missing cell reads as a missing key
            record[key] = value
        yield position, record
