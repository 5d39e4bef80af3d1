"""Reproduction files: each condition's commands, then its scores against the expected ones.

A YAML file holds `name`, `variables` (defaults; an environment variable of the same name wins) and
`conditions`, each with `name`, `commands` (run in order with bash), `metrics` (the JSON that
`xretrieve evaluate --out` wrote), `expected` ({"all.nDCG@10": 0.43, "per_lang.fi.R@100": ...}) and an
optional `tolerance` (absolute, default 0.001). In commands, a substituted value is shell-quoted: one word
to bash, whatever spaces, quotes or `;` it holds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from xretrieve.errors import UserError

DEFAULT_TOLERANCE = 0.001
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Check:
    condition: str
    key: str
    expected: float
    got: float | None
    tolerance: float
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and self.got is not None and abs(self.got - self.expected) <= self.tolerance

    def line(self) -> str:
        status = "OK  " if self.ok else "FAIL"
        got = "-" if self.got is None else f"{self.got:.4f}"
        detail = f" ({self.problem})" if self.problem else ""
        return (
            f"{status} {self.condition}  {self.key}  got {got}  expected {self.expected:.4f} ± {self.tolerance}{detail}"
        )


def load_spec(path: str | Path) -> dict:
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("conditions"), list):
        raise UserError(f"{path}: expected a mapping with a list of 'conditions'")
    for i, condition in enumerate(spec["conditions"]):
        for field in ("name", "commands", "metrics", "expected"):
            if field not in condition:
                raise UserError(f"{path}: condition {i + 1} ({condition.get('name', '?')}) has no {field!r}")
    return spec


def _substitute(text: str, variables: dict[str, str], where: str, shell: bool = False) -> str:
    """`text` with each ${NAME} replaced by its value; for a `shell` command the value is quoted, so a value
    (often from the environment) is one word to bash, never code."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            raise UserError(f"{where}: ${{{name}}} is not defined (set it in 'variables' or the environment)")
        return shlex.quote(variables[name]) if shell else variables[name]

    return _VARIABLE.sub(value, str(text))


def _lookup(metrics: dict, key: str) -> float | None:
    node = metrics
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return float(node) if isinstance(node, int | float) else None


def reproduce(path: str, only: list[str] | None = None, echo=print) -> list[Check]:
    """Run the conditions (all, or those named in `only`) and return one check per expected score."""
    spec = load_spec(path)
    variables = {k: str(v) for k, v in (spec.get("variables") or {}).items()}
    variables.update({k: os.environ[k] for k in variables if k in os.environ})
    conditions = [c for c in spec["conditions"] if not only or c["name"] in only]
    if only and len(conditions) < len(set(only)):
        unknown = sorted(set(only) - {c["name"] for c in spec["conditions"]})
        raise UserError(f"{path}: no condition named {', '.join(unknown)}")
    # commands call `xretrieve`: the one installed beside this interpreter, even in a venv not activated
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    checks: list[Check] = []
    for condition in conditions:
        name = condition["name"]
        where = f"{path}: condition {name}"
        tolerance = float(condition.get("tolerance", spec.get("tolerance", DEFAULT_TOLERANCE)))
        expected = {k: float(v) for k, v in condition["expected"].items()}
        problem = ""
        for command in condition["commands"]:
            command = _substitute(command, variables, where, shell=True)
            echo(f"[{name}] $ {command}")
            if subprocess.run(["bash", "-c", command], env=env).returncode != 0:
                problem = f"command failed: {command}"
                break
        metrics = {}
        if not problem:
            metrics_path = Path(_substitute(condition["metrics"], variables, where))
            try:
                metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                problem = f"cannot read {metrics_path}: {exc}"
        for key, value in expected.items():
            got = _lookup(metrics, key)
            note = problem or ("" if got is not None or not metrics else f"{key} not in the metrics file")
            check = Check(name, key, value, got, tolerance, note)
            checks.append(check)
            echo(check.line())
    passed = sum(c.ok for c in checks)
    echo(f"{passed}/{len(checks)} scores reproduced")
    return checks
