"""How a settings field declares its flag, and the parsers of flag text shared by several verbs.

A field declared with `option(default, help, ...)` is a flag: `xretrieve/cli/flags.py` turns its name,
type, default, help and the metadata here into an argparse argument, a `--config` YAML key and a
`--print-config` entry. A field declared without `option` is a library-only setting with no flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xretrieve.errors import UserError

FLAG = "xretrieve.flag"  # the metadata key under which a field keeps its FlagInfo


@dataclass(frozen=True)
class FlagInfo:
    """What argparse needs beyond the field's name, type and default."""

    help: str
    flag: str | None = None  # spelling when it is not --field-name (e.g. --shards for num_shards)
    choices: Sequence[str] | None = None
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None  # flag value (None when not given) -> field value
    repeat: bool = False  # the flag may be given again, each value added to a list
    many: bool = False  # one flag, one or more values
    const: str | None = None  # the flag's value may be left out; then it means this
    positional: bool = False
    one_of: str | None = None  # exactly one flag of this group is given
    deprecated: tuple[str, ...] = ()  # old spellings: hidden from --help, a warning when used
    invert: bool = False  # a switch that sets the field to False (--quiet for `progress`)
    unset: str | None = None  # what a default of None means, shown by --help
    input_file: bool = False  # names a file that must exist: checked before anything heavy is imported
    secret: bool = False  # --print-config hides the value


def option(default: Any = dataclasses.MISSING, help: str = "", **info: Any) -> Any:
    """A dataclass field that is also a flag; no default: the flag is required. See FlagInfo for `info`."""
    return dataclasses.field(default=default, metadata={FLAG: FlagInfo(help=help, **info)})


def flag_info(field: dataclasses.Field) -> FlagInfo | None:
    return field.metadata.get(FLAG)


# --- options several verbs share, declared once ---------------------------------------------------------------------


def model_option(unset: str = "the embedded multilingual-e5-small", help: str = "") -> Any:
    return option(None, help or "bi-encoder model name or folder", unset=unset)


def batch_size_option(default: int = 32, help: str = "texts encoded together") -> Any:
    return option(default, help)


def device_option(help: str = "torch device (cpu, cuda, ...)", unset: str = "cpu") -> Any:
    return option(None, help, unset=unset)


def progress_option() -> Any:
    return option(True, "no progress bars", flag="--quiet", invert=True)


def seed_option() -> Any:
    return option(0, "random seed")


def checkpoint_every_option() -> Any:
    return option(
        1000,
        "save encoding progress every N passages: an interrupted run resumes from there",
        metavar="N",
    )


def ray_option(work: str) -> Any:
    return option(
        None,
        f"{work} on Ray (extra 'dist'): join the cluster at ADDRESS, or start a local one without it",
        metavar="ADDRESS",
        const="local",
        unset="no Ray",
    )


def shard_option(help: str, unset: str = "all shards") -> Any:
    return option(None, help, parse=parse_shard_flag, unset=unset)


# --- flag text -> settings ------------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), with 0 <= i < n."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UserError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: shard index must be in 0..{count - 1} (shards count from 0)")
    return index, count


def parse_shard_flag(text: str | None) -> tuple[int, int] | None:
    return parse_shard(text) if text else None


def parse_list(text: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; nothing in it -> None."""
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def parse_langs(text: str | None) -> list[str] | None:
    return parse_list(text)


def parse_lang_weights(text: str | None) -> dict[str, float]:
    """'es=1,fr=0.5' -> {'es': 1.0, 'fr': 0.5}; languages not named weigh 1."""
    weights = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        lang, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not lang.strip() or weight < 0:
            raise UserError(f"--lang-weights {text!r}: expected LANG=WEIGHT pairs with weights >= 0, e.g. es=1,fr=0.5")
        weights[lang.strip()] = weight
    return weights
