"""The generator's prompt template: the default, and the one a trained generator folder carries."""

from __future__ import annotations

import json
from pathlib import Path

from xretrieve.formats import Document
from xretrieve.text import language_name

DEFAULT_TEMPLATE = "Generate a {language} question for this passage: {title} {passage}"
GENERATOR_SETTINGS = "xretrieve-generator.json"  # saved with a trained generator: its prompt template


def render_prompt(template: str, lang: str, doc: Document) -> str:
    return " ".join(template.format(language=language_name(lang), title=doc.title, passage=doc.text).split())


def saved_template(folder: str | Path) -> str:
    """The template a generator folder was trained with (its settings file), else the default."""
    settings = Path(folder) / GENERATOR_SETTINGS
    return json.loads(settings.read_text())["template"] if settings.is_file() else DEFAULT_TEMPLATE
