"""Command line: each verb parses its flags (or --config FILE.yaml) into its settings dataclass and calls one
function. The flags themselves are generated from those dataclasses (xretrieve/config/).

| module | job |
| --- | --- |
| `verbs` | the list of verbs: name, settings dataclass, handler |
| `handlers` | what each verb does with its settings |
| `flags` | argparse from a settings dataclass, and the parsed values back into one |
| `yaml_config` | `--config FILE.yaml` as the flags it stands for |
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from xretrieve import __version__
from xretrieve.cli.flags import add_flags, build, check_required, flags_of, input_files, printable, resolve
from xretrieve.cli.verbs import VERBS
from xretrieve.cli.yaml_config import with_config_file
from xretrieve.errors import UserError

__all__ = ["build_parser", "main"]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `xretrieve` parser and each verb's subparser."""
    parser = argparse.ArgumentParser(prog="xretrieve", description="Cross-lingual dense retrieval.")
    parser.add_argument("--version", action="version", version=f"xretrieve {__version__}")
    commands = parser.add_subparsers(dest="verb", required=True)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for verb in VERBS.values():
        sub = commands.add_parser(verb.name, help=verb.help, description=verb.help)
        sub.add_argument(
            "--config", metavar="FILE.yaml", help="YAML file of settings (keys: flag names); flags given override it"
        )
        sub.add_argument(
            "--print-config",
            action="store_true",
            help="print the settings this command would run with, as JSON, and exit without doing anything",
        )
        add_flags(sub, verb.config)
        subparsers[verb.name] = sub
    return parser, subparsers


def check_input_files(paths: list[str]) -> None:
    """Input files must exist: checked before a verb imports anything heavy (torch alone takes seconds).
    Folders (--index, --embeddings) are checked by their manifest readers, which import nothing heavy either."""
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{path}: {'is a folder, not a file' if os.path.isdir(path) else 'no such file'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    try:
        args = parser.parse_args(with_config_file(argv, {name: flags_of(v.config) for name, v in VERBS.items()}))
        verb = VERBS[args.verb]
        values = resolve(verb.name, verb.config, args)
        if args.print_config:
            print(json.dumps(printable(verb.config, values), indent=2))
            return 0
        check_required(subparsers[verb.name], verb.config, values)
        check_input_files(input_files(verb.config, values))
        status = verb.handler(build(verb.config, values))
    except UserError as exc:
        print(f"xretrieve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that is a folder, unreadable, or on a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xretrieve: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xretrieve: interrupted", file=sys.stderr)
        return 130
    return status or 0
