"""Flags generated from settings dataclasses.

Each field declared with `xretrieve.config.fields.option` becomes one argparse argument; the parsed values
become the dataclass again. Nothing else declares a flag, its default or its help, so `--help`,
`--config FILE.yaml` and `--print-config` cannot disagree with the library's defaults.

A flag's `key` is its name with `-` turned to `_` (`--batch-size`: batch_size; `--no-translate`: translate):
argparse's dest, the YAML key and the --print-config key. Its value is what the user typed, parsed by type
(`"0/4"` for --shard, `"es,fr"` for --langs); `build` turns the values into the dataclass's fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xretrieve.config.fields import FlagInfo, flag_info

SCALARS = {"int": int, "float": float, "str": str}
RESERVED = ("config", "print_config", "help", "verb")  # keys the CLI itself uses


@dataclass(frozen=True)
class Flag:
    """The flag of one settings field."""

    field: str
    key: str
    spelling: str  # --batch-size; a positional's name
    info: FlagInfo
    kind: str  # switch, value, repeat (the flag again for each value), many (one flag, values), positional
    type: type | None  # what argparse converts each value with; switches take none
    default: Any  # the value when not given: what --help shows and --print-config prints
    required: bool

    def deprecated_dest(self, spelling: str) -> str:
        return f"{self.key}@{spelling}"  # not an identifier: never a flag's key


@functools.cache
def flags_of(cls: type) -> tuple[Flag, ...]:
    """The flags of a settings dataclass, in field order (its fields declared without `option` have none)."""
    flags = tuple(_flag(cls, field) for field in dataclasses.fields(cls) if flag_info(field) is not None)
    for flag in flags:
        if flag.key in RESERVED:
            raise TypeError(f"{cls.__name__}.{flag.field}: the flag key {flag.key!r} is the CLI's own")
    return flags


def _flag(cls: type, field: dataclasses.Field) -> Flag:
    info = flag_info(field)
    required = field.default is dataclasses.MISSING
    default = None if required else field.default
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    base = annotation.replace(" | None", "").replace("None | ", "")  # a string under `from __future__ import ...`
    spelling = field.name if info.positional else info.flag or "--" + field.name.replace("_", "-")
    key = spelling.lstrip("-").replace("-", "_")
    if base == "bool":
        kind, value_type = "switch", None
        if info.invert:  # --quiet sets progress to False
            default = not default
        elif default:  # --no-translate sets translate to False
            if not key.startswith("no_"):
                raise TypeError(f"{cls.__name__}.{field.name}: a switch that turns a setting off is spelt --no-...")
            key = key[3:]
    else:
        kind = "positional" if info.positional else "repeat" if info.repeat else "many" if info.many else "value"
        value_type = str if info.parse or kind in ("repeat", "many") else SCALARS.get(base)
        if value_type is None:
            raise TypeError(f"{cls.__name__}.{field.name}: a {base} flag needs `parse` (flag text -> value)")
        if not isinstance(default, (str, int, float)):  # e.g. () for a repeated flag: none given
            default = None
    return Flag(field.name, key, spelling, info, kind, value_type, default, required)


# --- argparse ---------------------------------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """An argument for each flag of `cls`. Nothing is `required` to argparse, so that --print-config works
    without them; `check_required` says what is missing with argparse's own words."""
    groups: dict[str, Any] = {}
    for flag in flags_of(cls):
        target = parser
        if flag.info.one_of:
            if flag.info.one_of not in groups:
                groups[flag.info.one_of] = parser.add_mutually_exclusive_group()
            target = groups[flag.info.one_of]
        if flag.kind == "positional":
            target.add_argument(flag.key, nargs="?", help=help_text(flag), **_value_options(flag))
            continue
        target.add_argument(flag.spelling, dest=flag.key, help=help_text(flag), **_kind_options(flag))
        for old in flag.info.deprecated:
            parser.add_argument(old, dest=flag.deprecated_dest(old), type=flag.type, help=argparse.SUPPRESS)


def _kind_options(flag: Flag) -> dict[str, Any]:
    if flag.kind == "switch":
        return {"action": "store_false" if flag.default else "store_true", "default": flag.default}
    options = _value_options(flag)
    if flag.kind == "repeat":
        options["action"] = "append"
    elif flag.kind == "many":
        options["nargs"] = "+"
    elif flag.info.const is not None:
        options |= {"nargs": "?", "const": flag.info.const}
    return options


def _value_options(flag: Flag) -> dict[str, Any]:
    options = {"type": flag.type, "default": flag.default}
    if flag.info.choices:
        options["choices"] = list(flag.info.choices)
    if flag.info.metavar:
        options["metavar"] = flag.info.metavar
    return options


def help_text(flag: Flag) -> str:
    """The flag's help, ending with its default (the value --print-config prints) or "required"; a switch
    needs no default: it is off unless given."""
    if flag.kind == "switch":
        return _escaped(flag.info.help)
    if flag.required:
        suffix = "required"
    elif flag.default is None:
        suffix = f"default: none, i.e. {flag.info.unset}" if flag.info.unset else "default: none"
    else:
        shown = flag.default if isinstance(flag.default, str) and flag.default else json.dumps(flag.default)
        suffix = f"default: {shown}"
    return _escaped(f"{flag.info.help} ({suffix})".strip())


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help


# --- parsed flags -> settings -----------------------------------------------------------------------------------


def resolve(verb: str, cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """{key: value} of every flag of `cls`, a deprecated spelling's value under the current key (with a
    warning); what was not given is its default, a missing required flag None."""
    values = {}
    for flag in flags_of(cls):
        value = getattr(namespace, flag.key)
        for old in flag.info.deprecated:
            given = getattr(namespace, flag.deprecated_dest(old))
            if given is not None:
                print(f"xretrieve: {verb} {old} is deprecated: use {flag.spelling}", file=sys.stderr)
                value = given if value is None else value
        values[flag.key] = value
    return values


def check_required(parser: argparse.ArgumentParser, cls: type, values: Mapping[str, Any]) -> None:
    """Exit 2 with argparse's usage and message when a required flag, or one of a required group, is missing."""
    missing = [flag.spelling for flag in flags_of(cls) if flag.required and values[flag.key] is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    groups: dict[str, list[Flag]] = {}
    for flag in flags_of(cls):
        if flag.info.one_of:
            groups.setdefault(flag.info.one_of, []).append(flag)
    for members in groups.values():
        if all(values[flag.key] is None for flag in members):
            parser.error(f"one of the arguments {' '.join(flag.spelling for flag in members)} is required")


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """The settings dataclass from the flags' values; its __post_init__ checks them."""
    fields = {}
    for flag in flags_of(cls):
        value = values[flag.key]
        if flag.kind == "switch":
            fields[flag.field] = not value if flag.info.invert else value
        elif flag.info.parse is not None:
            fields[flag.field] = flag.info.parse(value)
        elif value is not None:
            fields[flag.field] = value
    return cls(**fields)


def printable(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values for --print-config, secrets hidden."""
    shown = dict(values)
    for flag in flags_of(cls):
        if flag.info.secret and shown[flag.key] is not None:
            shown[flag.key] = ["<hidden>" for _ in shown[flag.key]] if flag.kind == "repeat" else "<hidden>"
    return shown


def input_files(cls: type, values: Mapping[str, Any]) -> list[str]:
    """The files that the flags name as inputs (checked to exist before anything heavy is imported)."""
    paths = []
    for flag in flags_of(cls):
        value = values[flag.key] if flag.info.input_file else None
        paths += value if isinstance(value, list) else [] if value is None else [value]
    return paths
