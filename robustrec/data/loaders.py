"""Read interaction logs from files into :class:`Interactions` or :class:`Split`.

Formats (the names are defined once, in :data:`FORMATS`):

======================  ==========================================================  ==================
format                  input                                                       returns
======================  ==========================================================  ==================
``csv``                 ``.csv`` / ``.tsv`` (optionally ``.gz``) file, one row per   ``Interactions``
                        event: user, item, optional rating and timestamp columns
``parquet``             ``.parquet`` file with the same columns                     ``Interactions``
``inter``               RecBole atomic ``.inter`` file (or a directory holding one):  ``Interactions``
                        tab-separated, header ``name:type`` (``user_id:token
                        item_id:token rating:float timestamp:float``)
``lightgcn``            directory with ``train.txt``, ``test.txt``; each line       ``Split``
                        ``user item item ...`` (0-based ints)
``nbpo-json``           directory with ``train_data.json``, ``validation_data.json``,  ``Split``
                        ``test_data.json``: JSON list, entry u = item ids of user u
``deca``                directory with tab-separated ``*.train.rating``,             ``Split``
                        ``*.valid.rating``, ``*.test.negative``: ``user item rating``
``auto``                detect one of the above from the path
======================  ==========================================================  ==================

A log (csv/parquet/inter) is split afterwards with :mod:`robustrec.data.split`; :func:`load_split` does both and always
returns a :class:`Split`. A directory format keeps the file's own split, in the index space of its training part:

* LightGCN / NBPO JSON ids are used as indices directly (``user_ids = arange(n_users)``), with ``n_users`` /
  ``n_items`` one more than the largest id in the training file. DeCA raw ids (users are 1-based there) are
  mapped to contiguous indices of the sorted distinct training ids.
* Held-out (validation/test) interactions whose user or item never occurs in the training part are **dropped**
  (a recommender trained on train cannot score them), and so are held-out pairs also present in train (full
  ranking masks training items). Duplicate pairs are merged. Users listed with no item are skipped. All of it is
  counted in the returned object's ``report`` (:class:`~robustrec.data.report.LoadReport`) and logged on the
  ``robustrec.data`` logger (WARNING when anything was dropped or merged).

Bad input raises :class:`~robustrec.data.errors.DataError` naming the file, the 1-based line (or JSON entry) and the
column and value: missing columns, non-integer or negative ids where ints are required, empty files, malformed
JSON. A missing path raises ``FileNotFoundError``.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustrec.data.errors import DataError, undecodable
from robustrec.data.interactions import Interactions, _build, _from_frame
from robustrec.data.report import LoadReport
from robustrec.data.split import Split, random_holdout

__all__ = [
    "FORMATS",
    "LOG_FORMATS",
    "COLUMN_ALIASES",
    "detect_format",
    "load",
    "load_split",
    "load_csv",
    "load_parquet",
    "load_inter",
    "load_lightgcn",
    "load_nbpo_json",
    "load_deca",
    "deca_noise_mask",
]

FORMATS: tuple[str, ...] = ("auto", "csv", "parquet", "inter", "lightgcn", "nbpo-json", "deca")
"""Every format name :func:`load` accepts; ``"auto"`` detects one of the others from the path."""

LOG_FORMATS: tuple[str, ...] = ("csv", "parquet", "inter")
"""The formats of a log (one row per event, returned as ``Interactions``, split afterwards); the others hold their
own split."""

INTER_TYPES: tuple[str, ...] = ("token", "token_seq", "float", "float_seq")
"""The field types of a RecBole atomic file's header (``name:type``)."""

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid", "customer_id", "reviewer_id", "reviewerid"),
    "item": ("item", "item_id", "itemid", "iid", "movie_id", "movieid", "product_id", "asin", "business_id"),
    "rating": ("rating", "ratings", "score", "stars", "overall"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unix_timestamp", "unixreviewtime"),
}
"""Column names tried (case-insensitively, in order) for csv/parquet when a column name is not given."""

_LIGHTGCN_FILES = ("train.txt", "test.txt")
_NBPO_FILES = ("train_data.json", "validation_data.json", "test_data.json")
_DECA_PATTERNS = {"train": "*.train.rating", "validation": "*.valid.rating", "test": "*.test.negative"}
_CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_INTER_SUFFIX = ".inter"


# ====================================================================== entry points
def detect_format(path: str | Path) -> str:
    """The format name (one of ``FORMATS[1:]``) of ``path``; DataError when none fits."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "train.txt").is_file():
            return "lightgcn"
        if (path / "train_data.json").is_file():
            return "nbpo-json"
        if any(path.glob(_DECA_PATTERNS["train"])):
            return "deca"
        if len(list(path.glob("*" + _INTER_SUFFIX))) == 1:
            return "inter"
    else:
        name = path.name.lower()
        if name.endswith(_CSV_SUFFIXES):
            return "csv"
        if name.endswith(_PARQUET_SUFFIXES):
            return "parquet"
        if name.endswith(_INTER_SUFFIX):
            return "inter"
    raise DataError(
        "cannot detect the data format: expected a directory with train.txt (lightgcn), train_data.json "
        "(nbpo-json), *.train.rating (deca) or one *.inter file (inter), or a .csv/.tsv/.parquet/.inter file; "
        "pass format= explicitly, one of "
        f"{list(FORMATS)}",
        source=path,
    )


def load(
    path: str | Path,
    *,
    format: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
    has_header: bool = True,
) -> Split | Interactions:
    """Load an interaction log or a ready split from ``path``.

    Args:
        path: file (csv, parquet, inter) or directory (lightgcn, nbpo-json, deca; inter).
        format: one of :data:`FORMATS`.
        user_col, item_col, rating_col, timestamp_col: column names of a log (:data:`LOG_FORMATS`); ``None`` looks
            for the default name and then the :data:`COLUMN_ALIASES` (user and item are required, rating and
            timestamp optional). In an ``.inter`` header the names are those before ``:type``.
        sep: field separator of csv (default ``"\\t"`` for ``.tsv`` and ``","`` otherwise) and inter (``"\\t"``).
        has_header: csv only; without a header the columns are user, item[, rating[, timestamp]] by position.

    Returns:
        ``Interactions`` for a log (a log to split), ``Split`` for the directory formats (their own split).
        Use :func:`load_split` to always get a ``Split``. ``result.report`` holds the load counts.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {list(FORMATS)}")
    if format == "auto":
        format = detect_format(path)
    if format in LOG_FORMATS:
        cols = dict(user_col=user_col, item_col=item_col, rating_col=rating_col, timestamp_col=timestamp_col)
        if format == "csv":
            return load_csv(path, sep=sep, has_header=has_header, **cols)
        if not has_header:
            raise ValueError(f"has_header=False applies to csv only, not {format!r}")
        if format == "inter":
            return load_inter(path, sep=sep, **cols)
        if sep is not None:
            raise ValueError("sep applies to csv and inter only, not 'parquet'")
        return load_parquet(path, **cols)
    given = {
        k: v
        for k, v in dict(user_col=user_col, item_col=item_col, rating_col=rating_col, timestamp_col=timestamp_col,
                         sep=sep).items()
        if v is not None
    }
    if given or not has_header:
        raise ValueError(f"options {sorted(given) or ['has_header']} apply to the log formats {list(LOG_FORMATS)} "
                         f"only, not {format!r}")
    return _DIRECTORY_LOADERS[format](path)


def load_split(
    path: str | Path,
    *,
    format: str = "auto",
    test_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> Split:
    """Like :func:`load` but always a ``Split``: a log (csv/parquet/inter) is split with
    :func:`~robustrec.data.split.random_holdout` (``test_fraction``, ``validation_fraction``, ``seed``); a
    directory format keeps its own split and ignores those three."""
    data = load(path, format=format, **options)
    if isinstance(data, Split):
        return data
    split = random_holdout(data, test_fraction=test_fraction, validation_fraction=validation_fraction, seed=seed)
    return Split(split.train, split.test, split.validation, report=data.report)


# ====================================================================== csv / parquet
def _normalise(name: object) -> str:
    return str(name).strip().lower().replace(" ", "_")


def _resolve_columns(
    columns: list, source: str, given: dict[str, str | None]
) -> dict[str, str | None]:
    """Map role (user/item/rating/timestamp) → column name of the frame, or None for an absent optional role."""
    by_norm = {}
    for c in columns:
        by_norm.setdefault(_normalise(c), c)
    resolved: dict[str, str | None] = {}
    for role, name in given.items():
        if name is not None:
            if name not in columns:
                raise DataError(
                    f"missing {role} column; available columns: {list(columns)}", source=source, column=name
                )
            resolved[role] = name
            continue
        found = next((by_norm[a] for a in COLUMN_ALIASES[role] if a in by_norm), None)
        if found is None and role in ("user", "item"):
            raise DataError(
                f"no {role} column found: looked for {list(COLUMN_ALIASES[role])}; available columns: "
                f"{list(columns)}; pass {role}_col= to name it",
                source=source,
                column=role,
            )
        resolved[role] = found
    return resolved


def _finish_log(df: pd.DataFrame, source: str, fmt: str, cols: dict[str, str | None], locate, extra) -> Interactions:
    inter = _from_frame(
        df,
        user_col=cols["user"],
        item_col=cols["item"],
        rating_col=cols["rating"],
        timestamp_col=cols["timestamp"],
        user_ids=None,
        item_ids=None,
        source=source,
        locate=locate,
        fmt=fmt,
        extra_report=extra,
    )
    if inter.n_interactions == 0:
        raise DataError("no interactions (only a header?)", source=source)
    inter.report.log()
    return inter


def load_csv(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
    has_header: bool = True,
) -> Interactions:
    """Read a csv/tsv log (one row per event) into ``Interactions``; see :func:`load` for the arguments.

    Raw ids may be ints or strings. Duplicate (user, item) rows are merged (max rating, latest timestamp);
    blank lines are skipped; both are counted in ``result.report``.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if sep is None:
        sep = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    try:
        df = pd.read_csv(path, sep=sep, header=0 if has_header else None, skip_blank_lines=False)
    except UnicodeDecodeError:
        raise undecodable(path) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file", source=source) from None
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataError(f"cannot parse csv: {e}", source=source, line=int(m.group(1)) if m else None) from None
    first_line = 2 if has_header else 1
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        df = df.loc[~blank]
    if not has_header:
        if df.shape[1] < 2:
            raise DataError(f"expected at least 2 columns (user, item), found {df.shape[1]}", source=source)
        df = df.iloc[:, :4]
        df.columns = ["user", "item", "rating", "timestamp"][: df.shape[1]]
    cols = _resolve_columns(
        list(df.columns), source, dict(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    )
    index = df.index.to_numpy()
    return _finish_log(
        df, source, "csv", cols, lambda pos: {"line": int(index[pos]) + first_line},
        {"blank_lines": {"all": int(blank.sum())}},
    )


def load_parquet(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
) -> Interactions:
    """Read a parquet log into ``Interactions``; errors name the 1-based row. See :func:`load_csv`."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError("empty file", source=source)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read parquet: {e}", source=source) from None
    cols = _resolve_columns(
        list(df.columns), source, dict(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    )
    df = df.reset_index(drop=True)
    return _finish_log(df, source, "parquet", cols, lambda pos: {"where": f"row {pos + 1}"}, None)


def _inter_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return path
    found = sorted(path.glob("*" + _INTER_SUFFIX))
    if len(found) != 1:
        raise DataError(f"expected one *{_INTER_SUFFIX} file in the directory, found {[p.name for p in found]}",
                        source=path)
    return found[0]


def load_inter(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
) -> Interactions:
    """Read a RecBole atomic ``.inter`` file (or the one in a directory) into ``Interactions``.

    The first line is the header, one ``name:type`` per field with type in :data:`INTER_TYPES`
    (``user_id:token item_id:token rating:float timestamp:float``); fields are tab-separated (``sep``), values
    unquoted. Token ids are kept as strings, as RecBole does. Column names (and ``user_col`` etc.) are the names
    before ``:type``; see :func:`load_csv` for duplicates and errors.
    """
    import csv

    path = _inter_file(Path(path))
    source = str(path)
    sep = "\t" if sep is None else sep
    with path.open(encoding="utf-8") as handle:
        first = handle.readline().rstrip("\r\n")
    if not first.strip():
        raise DataError("empty file or empty header line", source=source, line=1)
    header = first.split(sep)
    names, dtypes = [], {}
    for col, spec in enumerate(header, start=1):
        name, _, kind = spec.strip().partition(":")
        if kind not in INTER_TYPES or not name:
            raise DataError(f"an atomic-file header field is name:type with type in {list(INTER_TYPES)}",
                            source=source, line=1, column=col, value=spec)
        names.append(name)
        dtypes[spec] = str
    try:
        df = pd.read_csv(path, sep=sep, header=0, dtype=dtypes, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                         keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataError(f"cannot parse the inter file: {e}", source=source,
                        line=int(m.group(1)) if m else None) from None
    df.columns = names
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        df = df.loc[~blank]
    cols = _resolve_columns(
        names, source, dict(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    )
    index = df.index.to_numpy()
    return _finish_log(df, source, "inter", cols, lambda pos: {"line": int(index[pos]) + 2},
                       {"blank_lines": {"all": int(blank.sum())}})


# ====================================================================== own-split assembly
def _assemble(
    source: Path,
    fmt: str,
    train: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    held_out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    n_users: int,
    n_items: int,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    rows_read: dict[str, int],
    empty_users: dict[str, int] | None = None,
    blank_lines: dict[str, int] | None = None,
) -> Split:
    """Split from index arrays per part. Held-out rows with index < 0 or >= n (unknown ids), with a user or item
    absent from train, or with a pair present in train are dropped and counted."""
    tr, n_dup_train = _build(train[0], train[1], n_users, n_items, train[2], None, user_ids, item_ids)
    u_seen = tr.user_counts() > 0
    i_seen = tr.item_counts() > 0
    tu, ti = tr.coo()
    train_keys = tu * max(n_items, 1) + ti  # sorted (CSR order)
    duplicates = {"train": n_dup_train}
    dropped_unseen, dropped_in_train, parts = {}, {}, {}
    for name, (u, i, r) in held_out.items():
        ok = (u >= 0) & (u < n_users) & (i >= 0) & (i < n_items)
        ok[ok] = u_seen[u[ok]] & i_seen[i[ok]]
        dropped_unseen[name] = int((~ok).sum())
        key = u * max(n_items, 1) + i
        pos = np.searchsorted(train_keys, key)
        in_train = ok & (pos < len(train_keys)) & (train_keys[np.minimum(pos, len(train_keys) - 1)] == key)
        dropped_in_train[name] = int(in_train.sum())
        keep = ok & ~in_train
        parts[name], duplicates[name] = _build(
            u[keep], i[keep], n_users, n_items, None if r is None else r[keep], None, user_ids, item_ids
        )
    report = LoadReport(
        source=str(source),
        format=fmt,
        rows_read=rows_read,
        duplicates_merged=duplicates,
        empty_users=empty_users or {},
        blank_lines=blank_lines or {},
        dropped_unseen=dropped_unseen,
        dropped_in_train=dropped_in_train,
    )
    report.log()
    return Split(train=tr, test=parts["test"], validation=parts.get("validation"), report=report)


def _require_dir(path: str | Path, fmt: str, files: tuple[str, ...]) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory")
    if not path.is_dir():
        raise DataError(f"the {fmt} format expects a directory holding {list(files)}", source=path)
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise DataError(f"{fmt} directory lacks {missing}", source=path)
    return path


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise undecodable(path) from None
    if not text.strip():
        raise DataError("empty file", source=path)
    return text


def _bad_int_token(path: Path, lines: list[list[str]], fields: tuple[str, ...]) -> DataError:
    """DataError for the first token that is not a non-negative integer (fields[k] names column k+1)."""
    for ln, toks in enumerate(lines, start=1):
        for col, tok in enumerate(toks, start=1):
            try:
                ok = int(tok) >= 0
            except ValueError:
                ok = False
            if not ok:
                what = fields[min(col, len(fields)) - 1]
                return DataError(f"{what} must be a non-negative integer", source=path, line=ln, column=col, value=tok)
    raise AssertionError("no bad token found")  # pragma: no cover


# ====================================================================== lightgcn
def _read_lightgcn(path: Path) -> tuple[np.ndarray, np.ndarray, int, int, int, int]:
    """Parse ``user item item ...`` lines → (users (n,), items (n,), max user id, empty users, blank lines,
    rows read)."""
    tokens = [line.split() for line in _read_text(path).splitlines()]
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    try:
        flat = np.array(list(chain.from_iterable(tokens)), dtype=np.int64)
    except (ValueError, OverflowError):
        flat = None
    if flat is None or (flat < 0).any():
        raise _bad_int_token(path, tokens, ("user id", "item id"))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    nonblank = lengths > 0
    line_users = flat[starts[nonblank]]
    n_items_per_line = lengths[nonblank] - 1
    is_user = np.zeros(len(flat), dtype=bool)
    is_user[starts[nonblank]] = True
    users = np.repeat(line_users, n_items_per_line)
    items = flat[~is_user]
    return (
        users,
        items,
        int(line_users.max()) if len(line_users) else -1,
        int((n_items_per_line == 0).sum()),
        int((~nonblank).sum()),
        len(items),
    )


def load_lightgcn(path: str | Path) -> Split:
    """Load a LightGCN-format directory (``train.txt``, ``test.txt``) with its own split.

    ``n_users`` is one more than the largest user id listed in ``train.txt`` (including users listed without
    items, which are skipped and counted), ``n_items`` one more than the largest training item id.
    """
    path = _require_dir(path, "lightgcn", _LIGHTGCN_FILES)
    tu, ti, max_user, empty_tr, blank_tr, n_tr = _read_lightgcn(path / "train.txt")
    su, si, _, empty_te, blank_te, n_te = _read_lightgcn(path / "test.txt")
    if n_tr == 0:
        raise DataError("no interactions: every line holds only a user id", source=path / "train.txt")
    n_users, n_items = max_user + 1, int(ti.max()) + 1
    return _assemble(
        path,
        "lightgcn",
        (tu, ti, None),
        {"test": (su, si, None)},
        n_users,
        n_items,
        np.arange(n_users),
        np.arange(n_items),
        rows_read={"train": n_tr, "test": n_te},
        empty_users={"train": empty_tr, "test": empty_te},
        blank_lines={"train": blank_tr, "test": blank_te},
    )


# ====================================================================== nbpo-json
def _read_nbpo_json(path: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Parse a JSON list of per-user item lists → (users (n,), items (n,), number of entries, empty entries)."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e.msg}", source=path, line=e.lineno, column=e.colno) from None
    if not isinstance(data, list):
        raise DataError("expected a JSON list of per-user item lists", source=path, value=type(data).__name__)
    lengths = np.zeros(len(data), dtype=np.int64)
    for u, entry in enumerate(data):
        if not isinstance(entry, list):
            raise DataError(
                "expected a list of item ids", source=path, where=f"entry {u} (user {u})", value=entry
            )
        lengths[u] = len(entry)
    flat = list(chain.from_iterable(data))
    ok = all(type(x) is int for x in flat)  # bool, float and str ids are errors
    items = np.array(flat, dtype=np.int64) if ok else None
    if items is None or (items < 0).any():
        for u, entry in enumerate(data):
            for k, x in enumerate(entry):
                if type(x) is not int or x < 0:
                    raise DataError(
                        "item id must be a non-negative integer",
                        source=path,
                        where=f"entry {u} (user {u}), position {k}",
                        value=x,
                    )
    users = np.repeat(np.arange(len(data), dtype=np.int64), lengths)
    return users, items, len(data), int((lengths == 0).sum())


def load_nbpo_json(path: str | Path) -> Split:
    """Load the NBPO authors' JSON split (``train_data.json``, ``validation_data.json``, ``test_data.json``).

    Entry u of each list holds the item ids of user u; ``n_users`` is the length of the training list and
    ``n_items`` one more than the largest training item id. Value errors name the entry (user) and position
    in the list; JSON syntax errors name the line and column.
    """
    path = _require_dir(path, "nbpo-json", _NBPO_FILES)
    parts = {}
    n_entries, empty, rows = {}, {}, {}
    for name, file in zip(("train", "validation", "test"), _NBPO_FILES):
        u, i, n_entries[name], empty[name] = _read_nbpo_json(path / file)
        parts[name] = (u, i, None)
        rows[name] = len(i)
    if rows["train"] == 0:
        raise DataError("no interactions: every user's list is empty", source=path / "train_data.json")
    n_users, n_items = n_entries["train"], int(parts["train"][1].max()) + 1
    return _assemble(
        path,
        "nbpo-json",
        parts.pop("train"),
        parts,
        n_users,
        n_items,
        np.arange(n_users),
        np.arange(n_items),
        rows_read=rows,
        empty_users=empty,
    )


# ====================================================================== deca
def _deca_file(path: Path, part: str, required: bool) -> Path | None:
    matches = sorted(path.glob(_DECA_PATTERNS[part]))
    if len(matches) > 1:
        raise DataError(f"several {_DECA_PATTERNS[part]} files: {[m.name for m in matches]}", source=path)
    if not matches and required:
        raise DataError(f"deca directory lacks a {_DECA_PATTERNS[part]} file", source=path)
    return matches[0] if matches else None


def _read_deca(path: Path, *, rating_required: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Parse ``user<TAB>item<TAB>rating[...]`` lines → (users (n,), items (n,), ratings (n,) or None, blanks).

    Fields past the third (e.g. sampled negatives) are ignored. Ratings are None when ``rating_required`` is
    False and some line has only two fields."""
    rows = [line.split() for line in _read_text(path).splitlines()]
    blank = sum(1 for r in rows if not r)
    numbered = [(ln, r) for ln, r in enumerate(rows, start=1) if r]
    need = 3 if rating_required else 2
    short = next(((ln, r) for ln, r in numbered if len(r) < need), None)
    if short is not None:
        raise DataError(
            f"expected at least {need} tab-separated fields (user, item{', rating' if need == 3 else ''})",
            source=path,
            line=short[0],
            value="\t".join(short[1]),
        )
    try:
        ids = np.array([r[:2] for _, r in numbered], dtype=np.int64)
    except (ValueError, OverflowError):
        ids = None
    if ids is None or (ids < 0).any():
        lines = [[] for _ in rows]
        for ln, r in numbered:
            lines[ln - 1] = r[:2]
        raise _bad_int_token(path, lines, ("user id", "item id"))
    ratings = None
    if all(len(r) >= 3 for _, r in numbered):
        col = pd.to_numeric(pd.Series([r[2] for _, r in numbered]), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            ln, r = numbered[bad[0]]
            raise DataError("rating must be a number", source=path, line=ln, column=3, value=r[2])
        ratings = col
    return ids[:, 0], ids[:, 1], ratings, blank


def load_deca(path: str | Path) -> Split:
    """Load a DeCA-format directory: ``*.train.rating`` (every rating is an implicit positive; ratings kept in
    ``split.train.ratings``), ``*.valid.rating`` (validation, optional) and ``*.test.negative`` (test; its first
    two fields are user and item, the third the rating).

    The index space is that of the training file: sorted distinct training user (item) ids, so
    ``split.user_ids`` holds the raw (1-based, in the DeCA files) ids. See :func:`deca_noise_mask`.
    """
    path = _require_dir(path, "deca", ())
    files = {p: _deca_file(path, p, required=p != "validation") for p in ("train", "validation", "test")}
    files = {p: f for p, f in files.items() if f is not None}
    raw = {p: _read_deca(f, rating_required=p != "test") for p, f in files.items()}
    tu_raw, ti_raw, tr_ratings, _ = raw["train"]
    user_ids, item_ids = np.unique(tu_raw), np.unique(ti_raw)
    u_index, i_index = pd.Index(user_ids), pd.Index(item_ids)

    def to_index(u, i, r):
        return u_index.get_indexer(u).astype(np.int64), i_index.get_indexer(i).astype(np.int64), r

    train = to_index(tu_raw, ti_raw, tr_ratings)
    held_out = {p: to_index(u, i, r) for p, (u, i, r, _) in raw.items() if p != "train"}
    return _assemble(
        path,
        "deca",
        train,
        held_out,
        len(user_ids),
        len(item_ids),
        user_ids,
        item_ids,
        rows_read={p: len(v[0]) for p, v in raw.items()},
        blank_lines={p: v[3] for p, v in raw.items()},
    )


def deca_noise_mask(data: Split | Interactions, *, min_clean_rating: float = 4.0) -> np.ndarray:
    """The real noise of a DeCA log: ``(n_train_interactions,)`` bool, in the order of ``split.train.coo()``,
    True where the rating is below ``min_clean_rating`` (DeCA: rating < 4 is a noisy interaction).

    Raises:
        DataError: the training log has no ratings.
    """
    train = data.train if isinstance(data, Split) else data
    if train.ratings is None:
        raise DataError("deca_noise_mask needs ratings; this training log has none (load it with format='deca')")
    return train.ratings.data < min_clean_rating


_DIRECTORY_LOADERS = {"lightgcn": load_lightgcn, "nbpo-json": load_nbpo_json, "deca": load_deca}
assert set(FORMATS) == {"auto", *LOG_FORMATS, *_DIRECTORY_LOADERS}, "FORMATS and the loaders disagree"
