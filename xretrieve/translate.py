"""Translate-test: queries translated at query time into the documents' languages, with Apertium.

A search encodes a query and its translations into the index's document languages, and searches with their
weighted mean: (1 - w) q + w mean(t_D), renormalised. With inner-product scores that is exactly score fusion
(CombSUM) of the separate searches, at the cost of one search; benchmarks/adapt_xling.py measures it against
reciprocal rank fusion.

Translations go through the Apertium engine's long-lived pipelines (xretrieve/apertium.py): about 1 ms per
short query once a pipeline is up.
"""

from __future__ import annotations

import shutil

import numpy as np

from xretrieve.errors import UserError
from xretrieve.text import LANGUAGES

TRANSLATE_BACKENDS = ("apertium",)
DEFAULT_WEIGHT = 0.6  # measured on mo-xling dev (benchmarks/adapt_xling.py)
# each translation is one more text to encode with the query (about 9 ms each on 2 CPU cores): by default a query
# goes to the one reachable document language with the most documents (0: every reachable one)
DEFAULT_MAX_TARGETS = 1


class QueryTranslator:
    """Translates queries from their language into target languages through the installed Apertium pairs,
    pivoting where no direct pair exists, with the engine's long-lived pipelines."""

    def __init__(self, engine=None):
        from xretrieve.apertium import ApertiumEngine

        self.engine = engine or ApertiumEngine()

    def route(self, source: str, target: str) -> list[str] | None:
        return self.engine.route(source, target) if source != target else None

    def translate(self, text: str, source: str, target: str) -> str | None:
        chain = self.route(source, target)
        if not chain:
            return None
        for mode in chain:
            text = self.engine.translate([text], mode)[0]
        return text or None

    def close(self) -> None:
        self.engine.close()


class LanguageGuesser:
    """Offline language identification (lingua-language-detector) among the languages an index can use."""

    def __init__(self, candidates: list[str]):
        try:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
        except ImportError:
            raise UserError(
                "queries without a language need lingua-language-detector to guess it: "
                "pip install 'xretrieve[translate]', or give each query a lang"
            ) from None
        languages = []
        for code in candidates:
            try:
                languages.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except (AttributeError, ValueError):
                continue  # a language lingua does not know: never guessed, so never translated from
        if len(languages) < 2:
            self.detector, self.only = None, languages[0].iso_code_639_1.name.lower() if languages else None
        else:
            self.detector = LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()

    def guess(self, text: str) -> str | None:
        if self.detector is None:
            return self.only
        found = self.detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else None


def combine(query: np.ndarray, translations: list[np.ndarray], weight: float) -> np.ndarray:
    """(1 - w) q + w mean(t), unit length; q alone when there is no translation."""
    if not translations:
        return query
    mixed = (1 - weight) * query + weight * np.mean(translations, axis=0)
    norm = np.linalg.norm(mixed)
    return (mixed / norm).astype(np.float32) if norm > 0 else query


class TranslateTest:
    """What an index records under "translate" in its manifest, put to work: the query vectors of a search."""

    def __init__(self, settings: dict, doc_langs: dict[str, int] | list[str], translator=None, guesser=None):
        self.weight = float(settings.get("weight", DEFAULT_WEIGHT))
        self.max_targets = settings.get("max_targets", DEFAULT_MAX_TARGETS)
        # the documents' languages, most documents first: with max_targets, a query goes to the biggest ones
        counts = doc_langs if isinstance(doc_langs, dict) else dict.fromkeys(doc_langs, 0)
        self.targets = [
            lang for lang in settings.get("targets") or sorted(counts, key=lambda x: (-counts[x], x)) if lang
        ]
        self.translator = translator or QueryTranslator()
        # guess among every language the project names, not only translatable ones: a query in a language no
        # pair covers must be recognised as such, not taken for its nearest neighbour and mistranslated
        self.sources = sorted(set(LANGUAGES) | set(self.targets))
        self._guesser = guesser
        self.stats = {"queries": 0, "translated": 0, "translations": 0}

    def warm_up(self, sources: list[str]) -> None:
        """Start the pipelines from `sources` into the targets and load the language guesser, so that the
        first queries do not pay for it (a server calls this while loading); others start on first use."""
        for source in sources:
            for target in self.targets:
                for mode in self.translator.route(source, target) or []:
                    self.translator.engine.pipe(mode)
        try:
            self.guess("warm up")
        except UserError:
            pass  # without lingua, queries need their language; the first such query says so

    def guess(self, text: str) -> str | None:
        if self._guesser is None:
            self._guesser = LanguageGuesser(self.sources)
        return self._guesser.guess(text)

    def translations(self, text: str, lang: str | None, langs: list[str] | None = None) -> list[str]:
        """The query in each target language it can reach (those of `langs` only, when a filter is given)."""
        lang = lang or self.guess(text)
        if not lang:
            return []
        reachable = [
            t for t in self.targets if t != lang and (not langs or t in langs) and self.translator.route(lang, t)
        ]
        found = (self.translator.translate(text, lang, target) for target in reachable[: self.max_targets or None])
        return [t for t in found if t]

    def query_vectors(self, encoder, texts: list[str], query_langs, langs=None, batch_size: int = 32) -> np.ndarray:
        """Each query's vector: its own encoding combined with its translations', all encoded in one batch."""
        query_langs = list(query_langs or [None] * len(texts))
        extra = [self.translations(t, lang, langs) for t, lang in zip(texts, query_langs, strict=True)]
        flat = list(texts) + [t for group in extra for t in group]
        # batches grow with the translations: `batch_size` queries and theirs are encoded together (a server
        # asks for one batch of its queries; encoding a query and its translation apart costs 9 ms more)
        vectors = encoder.encode_queries(flat, batch_size=batch_size * -(-len(flat) // max(len(texts), 1)))
        out, start = [], len(texts)
        for row, group in enumerate(extra):
            out.append(combine(vectors[row], list(vectors[start : start + len(group)]), self.weight))
            start += len(group)
        self.stats["queries"] += len(texts)
        self.stats["translated"] += sum(1 for group in extra if group)
        self.stats["translations"] += sum(len(group) for group in extra)
        return np.stack(out).astype(np.float32) if out else vectors

    def close(self) -> None:
        self.translator.close()


def check_translate_settings(settings: dict) -> dict:
    backend = settings.get("backend")
    if backend not in TRANSLATE_BACKENDS:
        raise UserError(f"translate: unknown backend {backend!r} (have: {', '.join(TRANSLATE_BACKENDS)})")
    most = settings.get("max_targets", DEFAULT_MAX_TARGETS)
    if not isinstance(most, int) or isinstance(most, bool) or most < 0:
        raise UserError(f"translate: max_targets {most!r} must be an integer, 0 (all) or more")
    weight = settings.get("weight", DEFAULT_WEIGHT)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0.0 <= weight <= 1.0:
        raise UserError(f"translate: weight {weight!r} must be a number in [0, 1]")
    return settings


def apertium_available() -> bool:
    return shutil.which("apertium") is not None and shutil.which("apertium-wblank-mode") is not None
