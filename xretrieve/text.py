"""Language codes and a script-independent text comparison, shared by query generation, synthesis,
translation and training: a leaf module (it imports nothing of the package but errors), so that those can
all use it without importing each other."""

from __future__ import annotations

from xretrieve.errors import UserError

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


def language_name(code: str) -> str:
    return LANGUAGES.get(code, (code, ""))[0]


def check_languages(langs: list[str]) -> None:
    """Target languages must be known: prompts name them in English and Apertium modes by ISO 639-3 code."""
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise UserError(f"--langs: unknown language code {unknown[0]!r}; known: {', '.join(sorted(LANGUAGES))}")


def shingles(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the lower-cased text without spaces: comparable across scripts without a tokenizer."""
    compact = "".join(text.lower().split())
    return {compact[i : i + n] for i in range(max(len(compact) - n + 1, 1))}
