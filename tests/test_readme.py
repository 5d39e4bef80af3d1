import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(python3 -m venv .*?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "xretrieve demo" in demo and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_commands_install_cpu_torch_first():
    for command in readme_commands():
        steps = command.split(" && ")
        torch_step = next(i for i, s in enumerate(steps) if "torch==2.13.0" in s)
        package_step = next(i for i, s in enumerate(steps) if "pip install -e" in s)
        assert torch_step < package_step


def test_readme_documents_every_field_alias_of_the_input_files():
    """The readers accept other datasets' field names; each one is documented in the formats table."""
    from xretrieve.formats import ID_FIELDS, QUERY_TEXT_FIELDS

    rows = {
        line.split("|")[1].strip(): line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith(("| corpus | jsonl", "| queries | jsonl"))
    }
    for kind in ("corpus", "queries"):
        assert all(f"`{field}`" in rows[kind] for field in ID_FIELDS), kind
    assert all(f"`{field}`" in rows["queries"] for field in QUERY_TEXT_FIELDS)


def test_readme_documents_truncation_and_resuming():
    readme = (ROOT / "README.md").read_text()
    assert "passages truncated to 512 tokens" in readme
    assert "resuming: N of M passages already encoded" in readme and "--checkpoint-every" in readme
