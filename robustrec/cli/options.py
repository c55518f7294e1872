"""Command-line options generated from dataclass fields: one source of truth for names, types, defaults, help
and choices.

A field's flag is ``--`` + its name with dashes (or a ``rename``), its type comes from the annotation
(``tuple[int, ...]`` / ``list[int]`` → several values, ``bool`` → ``--x/--no-x``, ``X | None`` → X), its help and
choices from ``field(metadata={"help": ..., "choices": ...})``. The dataclass validates the values in its
``__post_init__`` when :func:`from_namespace` builds it.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
import warnings
from dataclasses import MISSING, Field, fields


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
        parser.add_argument(flag, **kwargs)
    for old, new in (deprecated or {}).items():
        if new in flags:
            value_type, several = _value_type(hints[new])
            parser.add_argument(flag_name(old), dest=new, type=value_type, nargs="+" if several else None,
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS, action=_DeprecatedAlias,
                                new_flag=flags[new])


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
