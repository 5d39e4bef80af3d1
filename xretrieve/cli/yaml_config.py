"""`--config FILE.yaml`: a verb's settings from a file, as the flags they stand for.

The file maps flag keys (`batch_size` or `batch-size`) to values. Its settings are spelt out as flags right
after the verb, so argparse checks their types and choices with the same messages as for typed flags, and
flags given later on the line win. Which flag a key is comes from the verb's settings dataclass
(cli/flags.py), not from argparse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xretrieve.cli.flags import Flag
from xretrieve.errors import UserError


def config_path(argv: list[str]) -> str | None:
    path = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"), None)
    return path or next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), None)


def with_config_file(argv: list[str], verbs: Mapping[str, tuple[Flag, ...]]) -> list[str]:
    """argv with the settings of its `--config FILE.yaml` (if any) inserted as flags after the verb;
    `verbs` gives each verb's flags."""
    path = config_path(argv)
    verb_at = next((i for i, arg in enumerate(argv) if arg in verbs), None)
    if not path or verb_at is None:
        return argv
    verb = argv[verb_at]
    tokens: list[str] = []
    known = _spellings(verbs[verb])
    for key, value in read_settings(path).items():
        found = known.get(str(key).replace("-", "_"))
        if found is None:
            raise UserError(f"--config {path}: unknown setting {key!r} for `xretrieve {verb}`")
        if value is not None:
            tokens += flag_tokens(*found, value, f"--config {path}: {key}")
    return argv[: verb_at + 1] + tokens + argv[verb_at + 1 :]


def read_settings(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: {exc}") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of flag names to values")
    return values


def _spellings(flags: tuple[Flag, ...]) -> dict[str, tuple[Flag, str]]:
    """key -> (flag, how to spell it); a deprecated spelling's key too, unless a current flag has it."""
    known = {flag.key: (flag, flag.spelling) for flag in flags if flag.kind != "positional"}
    for flag in flags:
        for old in flag.info.deprecated:
            known.setdefault(old.lstrip("-").replace("-", "_"), (flag, old))
    return known


def flag_tokens(flag: Flag, spelling: str, value: Any, where: str) -> list[str]:
    """The command-line words for one setting."""
    items = value if isinstance(value, list) else [value]
    if flag.kind == "switch":
        if not isinstance(value, bool):
            raise UserError(f"{where} takes true or false, not {value!r}")
        return [spelling] if value != flag.default else []
    if flag.kind == "repeat":
        return [word for item in items for word in (spelling, str(item))]
    if flag.kind == "many":
        return [spelling, *map(str, items)]
    return [spelling, ",".join(map(str, items))]  # a list for a comma-separated flag, e.g. lang: [en, fi]
