"""Command-line options generated from dataclass fields: one source of truth for names, types, defaults, help
and choices.

A field's flag is ``--`` + its name with dashes (or a ``rename``), its type comes from the annotation
(``tuple[int, ...]`` / ``list[int]`` → several values, ``bool`` → ``--x/--no-x``, ``X | None`` → X), its help and
choices from ``field(metadata={"help": ..., "choices": ...})``. The dataclass validates the values in its
``__post_init__`` when :func:`from_namespace` builds it.

Config files (:func:`add_config_argument`): ``COMMAND --config FILE`` reads option values from YAML or JSON, as
TRL's ``TrlParser`` does: the file's values, checked against the command's options, become the parser's defaults,
so flags on the command line override them and ``--config FILE --help`` shows them. A file is flat
(``{"lr": 0.05, "data": "log.csv"}``: option names, with ``_`` or ``-``, or the flag without dashes) or has one
section per dataclass (``{"train": {...TrainConfig fields}, "data": {...DataSpec fields}}``: a run's config.json).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import re
import types
import typing
import warnings
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Suffixes of config files, and the reader of each.
CONFIG_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")


class _DeprecatedAlias(argparse.Action):
    """A hidden old flag that stores into the new field's ``dest`` and warns once used."""

    def __init__(self, option_strings, dest, *, new_flag: str, **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        # FutureWarning, not DeprecationWarning: Python shows it to the person typing the command
        warnings.warn(f"{option_string} is deprecated; use {self.new_flag}", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def flag_name(name: str) -> str:
    """``phi_l2`` -> ``--phi-l2``."""
    return "--" + name.replace("_", "-")


def _value_type(annotation) -> tuple[type, bool]:
    """(scalar type, several values?) of a field annotation such as ``int``, ``str | None``, ``tuple[int, ...]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        return typing.get_args(annotation)[0], True
    return annotation, False


def _default(f: Field):
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
    deprecated: dict[str, str] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` (except ``skip``).

    Args:
        rename: field name -> flag, for fields exposed under another name (e.g. ``path`` -> ``--data``).
        deprecated: old field name -> field name: a hidden ``--old-name`` that warns and sets the new field.
    """
    rename = rename or {}
    hints = typing.get_type_hints(cls)
    flags = {}
    for f in fields(cls):
        if f.name in skip or not f.init:
            continue
        flag = flags[f.name] = rename.get(f.name, flag_name(f.name))
        value_type, several = _value_type(hints[f.name])
        default = _default(f)
        kwargs: dict = {"dest": f.name, "default": default, "help": f.metadata.get("help", "")}
        if several:
            kwargs.update(nargs="+", type=value_type)
        elif value_type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = value_type
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        action = parser.add_argument(flag, **kwargs)
        action.dataclass = cls  # which dataclass's field this option sets (config-file sections check it)
    for old, new in (deprecated or {}).items():
        if new in flags:
            value_type, several = _value_type(hints[new])
            alias = parser.add_argument(flag_name(old), dest=new, type=value_type, nargs="+" if several else None,
                                        default=argparse.SUPPRESS, help=argparse.SUPPRESS, action=_DeprecatedAlias,
                                        new_flag=flags[new])
            alias.dataclass = cls


def from_namespace(cls: type, namespace: argparse.Namespace, *, rename: dict[str, str] | None = None, **values):
    """``cls(**fields found in namespace, **values)``: the dataclass built (and validated) from parsed options.

    A ValueError of the dataclass's validation names fields; it is re-raised naming the options as typed
    (``inject_noise must be >= 0`` -> ``--inject-noise must be >= 0``).
    """
    given = {f.name: getattr(namespace, f.name) for f in fields(cls) if f.init and hasattr(namespace, f.name)}
    try:
        return cls(**{**given, **values})
    except ValueError as error:
        raise ValueError(_name_flags(str(error), {name: (rename or {}).get(name, flag_name(name)) for name in given}))\
            from None


def _name_flags(message: str, flags: dict[str, str]) -> str:
    """``message`` with field names replaced by their flags: a snake_case name wherever it stands as a word, a
    plain word (``device``, ``loss``) only where it starts the message (elsewhere it is likely just a word)."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        return flags[name] if "_" in name or match.start() == 0 else name

    if not flags:
        return message
    pattern = r"(?<![\w-])(" + "|".join(sorted(map(re.escape, flags), key=len, reverse=True)) + r")(?![\w-])"
    return re.sub(pattern, replace, message)


# ---------------------------------------------------------------------------------------------- config files
class ConfigFileParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reads ``--config FILE`` (:func:`add_config_argument`) before the command line."""

    config_sections: dict[str, type] | None = None

    def parse_known_args(self, args=None, namespace=None):
        if self.config_sections is not None:
            finder = argparse.ArgumentParser(prog=self.prog, add_help=False)
            finder.add_argument("--config", type=Path)
            path = finder.parse_known_args(args)[0].config
            if path is not None:
                try:
                    values, ignored = read_config(path, self)
                except (ValueError, OSError) as error:
                    self.error(str(error))
                self.set_defaults(**values, config_report=_report(path, values, ignored))
        return super().parse_known_args(args, namespace)


def add_config_argument(parser: ConfigFileParser, sections: dict[str, type]) -> None:
    """``--config FILE`` for ``parser``; ``sections`` names the dataclasses whose fields a file may hold in a
    section (``{"train": TrainConfig, "data": DataSpec}``)."""
    if not isinstance(parser, ConfigFileParser):
        raise TypeError(f"--config needs a ConfigFileParser, got {type(parser).__name__}")
    parser.config_sections = dict(sections)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML or JSON file of option values (flat, or sections " + ", ".join(sections) +
                             " as in a run's config.json); options given on the command line override it")
    parser.set_defaults(config_report=None)


def report_config(args: argparse.Namespace) -> None:
    """Log where the options came from when a config file was read (call at the start of a command's run)."""
    if getattr(args, "config_report", None):
        log.info("%s", args.config_report)


def _report(path: Path, values: dict, ignored: list[str]) -> str:
    text = f"options from {path}: {len(values)} values (options on the command line override them)"
    if ignored:
        text += f"; ignored, as this command sets them from its own options: {', '.join(ignored)}"
    return text


def _load_file(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: no such config file")
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ValueError(f"{path}: a config file must end with one of {list(CONFIG_SUFFIXES)}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {error.lineno}, column {error.colno}: malformed JSON: {error.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ValueError(f"{path}{where}: malformed YAML: {getattr(error, 'problem', error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    return data


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Key -> action of every option a config file may set: its dest and its long flags without dashes, with
    ``-`` as ``_``."""
    keys = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config", argparse.SUPPRESS):
            continue
        if not isinstance(action, _DeprecatedAlias):  # an old flag answers to its own name, not to its field's
            keys[action.dest] = action
        for flag in action.option_strings:
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = action
    return keys


def read_config(path: Path, parser: ConfigFileParser) -> tuple[dict[str, Any], list[str]]:
    """(dest -> value for ``parser.set_defaults``, keys ignored) of the config file at ``path``.

    Keys must name an option of ``parser`` or, inside a section, a field of the section's dataclass; a field the
    command does not expose (it sets it itself, e.g. ``compare``'s ``model``) is ignored and listed. Values are
    converted and checked as their flags' would be. ValueError naming the file and the key otherwise.
    """
    path = Path(path)
    data = _load_file(path)
    options = _options(parser)
    sections = parser.config_sections or {}
    values: dict[str, Any] = {}
    ignored: list[str] = []

    def set_value(key: str, action: argparse.Action, value) -> None:
        if isinstance(action, _DeprecatedAlias):
            warnings.warn(f"{path}: {key} is deprecated; use {action.dest}", FutureWarning, stacklevel=4)
        converted = _convert(action, value, f"{path}: {key}")
        if action.dest in values and values[action.dest] != converted:
            raise ValueError(f"{path}: {key} sets {action.option_strings[0]} a second time, to another value")
        values[action.dest] = converted

    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in sections and isinstance(value, dict):
            cls = sections[name]
            known = {f.name for f in fields(cls) if f.init}
            for field_name, field_value in value.items():
                where = f"{name}.{field_name}"
                alias = options.get(field_name)
                if field_name not in known and isinstance(alias, _DeprecatedAlias) and alias.dataclass is cls:
                    set_value(where, alias, field_value)
                    continue
                if field_name not in known:
                    close = difflib.get_close_matches(field_name, known, n=1)
                    raise ValueError(f"{path}: unknown key {where!r}" +
                                     (f" (did you mean {name + '.' + close[0]!r}?)" if close else "") +
                                     f"; {name} holds fields of {cls.__name__}")
                action = options.get(field_name)
                if action is None or getattr(action, "dataclass", None) is not cls:
                    ignored.append(where)
                    continue
                set_value(where, action, field_value)
        elif name in options:
            set_value(name, options[name], value)
        elif any(name in {f.name for f in fields(cls)} for cls in sections.values()):
            ignored.append(name)
        else:
            close = difflib.get_close_matches(name, [*options, *sections], n=1)
            raise ValueError(f"{path}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "") +
                             f"; keys are this command's options (see {parser.prog} --help)" +
                             (f" or the sections {', '.join(sections)}" if sections else ""))
    return values, ignored


def _convert(action: argparse.Action, value, where: str):
    """``value`` from a config file as the option ``action`` would have parsed it; ValueError naming ``where``."""
    if value is None:
        if action.default is None:
            return None
        raise ValueError(f"{where} must not be null")
    if action.nargs == 0:  # --x/--no-x, store_true
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if action.nargs in ("+", "*"):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if action.nargs == "+" and not items:
            raise ValueError(f"{where} needs at least one value")
        return [_convert_one(action, v, where) for v in items]
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"{where} takes one value, got {value!r}")
    return _convert_one(action, value, where)


def _convert_one(action: argparse.Action, value, where: str):
    kind = action.type
    if isinstance(value, (dict, list)) or (isinstance(value, bool) and kind is not None):
        raise ValueError(f"{where}: expected {getattr(kind, '__name__', 'a value')}, got {value!r}")
    try:
        if kind is None or kind is str:
            converted = value if isinstance(value, str) else str(value)
        elif kind is int and isinstance(value, float):
            raise ValueError("not an integer")
        elif kind in (int, float) and isinstance(value, (int, float)):
            converted = kind(value)
        else:  # strings (YAML reads 1e-4 as one) and custom types parse as on the command line
            converted = kind(str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        raise ValueError(f"{where}: invalid {getattr(kind, '__name__', 'value')} {value!r} ({error})") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{where}: {converted!r} is not one of {list(action.choices)}")
    return converted
