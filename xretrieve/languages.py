"""The languages xretrieve knows by name: prompts name them in English, Apertium modes by ISO 639-3 code.

Core, since translate-test (`translate.py`), the Apertium engine, the LLM prompts and the configuration's checks
all read the same table.
"""

from __future__ import annotations

from xretrieve.errors import UserError

# ISO 639-1 code -> (English name for the prompt, ISO 639-3 code as some Apertium modes name languages)
LANGUAGES = {
    "ar": ("Arabic", "ara"),
    "bn": ("Bengali", "ben"),
    "ca": ("Catalan", "cat"),
    "de": ("German", "deu"),
    "en": ("English", "eng"),
    "es": ("Spanish", "spa"),
    "fa": ("Persian", "fas"),
    "fi": ("Finnish", "fin"),
    "fr": ("French", "fra"),
    "gl": ("Galician", "glg"),
    "hi": ("Hindi", "hin"),
    "id": ("Indonesian", "ind"),
    "it": ("Italian", "ita"),
    "ja": ("Japanese", "jpn"),
    "ko": ("Korean", "kor"),
    "pt": ("Portuguese", "por"),
    "ru": ("Russian", "rus"),
    "sw": ("Swahili", "swa"),
    "te": ("Telugu", "tel"),
    "th": ("Thai", "tha"),
    "tl": ("Tagalog", "tgl"),
    "vi": ("Vietnamese", "vie"),
    "yo": ("Yoruba", "yor"),
    "zh": ("Chinese", "zho"),
}
ISO3 = {iso3: code for code, (_, iso3) in LANGUAGES.items()}


def language_name(code: str) -> str:
    return LANGUAGES.get(code, (code, ""))[0]


def check_languages(langs: list[str]) -> None:
    """Target languages must be known: prompts name them in English and Apertium modes by ISO 639-3 code."""
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise UserError(f"--langs: unknown language code {unknown[0]!r}; known: {', '.join(sorted(LANGUAGES))}")
