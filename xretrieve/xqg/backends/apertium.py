"""Pseudo-queries by offline machine translation: a passage's title and leading sentence, translated by Apertium
(`xretrieve/apertium.py`) into the target language, pivoting through other languages where no direct pair exists."""

from __future__ import annotations

import re

from xretrieve.apertium import ApertiumEngine
from xretrieve.formats import Document

_SENTENCE_END = re.compile(r"(?<=[.!?。！？؟])\s+")


def lead_text(doc: Document, max_words: int) -> str:
    """Title and leading sentence, cut to `max_words` words: what a pseudo-query is translated from."""
    first = _SENTENCE_END.split(doc.text.strip(), maxsplit=1)[0]
    return " ".join(f"{doc.title} {first}".split()[:max_words])


def key_texts(doc: Document, count: int, max_words: int) -> list[str]:
    """Up to `count` texts to translate into pseudo-queries: the lead text, then the title with each of the
    longest other sentences (longest first; the longest sentences carry the most content words)."""
    others = [s for s in _SENTENCE_END.split(doc.text.strip())[1:] if s.strip()]
    longest = sorted(others, key=lambda s: -len(s.split()))[: count - 1]  # stable: ties keep passage order
    return [lead_text(doc, max_words)] + [" ".join(f"{doc.title} {s}".split()[:max_words]) for s in longest]


class TranslationGenerator:
    """One pseudo-query per passage and target language: its lead text, translated. Deterministic (no seed)."""

    whole_shard = True  # one call per mode and shard: the texts stream through the pipeline together

    def __init__(self, engine: ApertiumEngine | None = None, max_words: int = 32):
        self.engine = engine or ApertiumEngine()
        self.max_words = max_words
        self.identity = {"backend": "apertium", "modes": sorted(self.engine.modes.values()), "max_words": max_words}

    def generate(self, docs: list[Document], lang: str, num: int, seed: int) -> list[tuple[str, list[str]]]:
        results: list[tuple[str, list[str]]] = [("", [])] * len(docs)
        by_source: dict[str, list[int]] = {}
        for i, doc in enumerate(docs):
            if doc.lang and doc.lang != lang:  # a passage's own language needs no translation
                by_source.setdefault(doc.lang, []).append(i)
        for source, rows in by_source.items():
            chain = self.engine.route(source, lang)
            if not chain:
                continue
            texts = [lead_text(docs[i], self.max_words) for i in rows]
            for mode in chain:
                texts = self.engine.translate(texts, mode)
            label = "apertium:" + ">".join(chain)
            for i, text in zip(rows, texts, strict=True):
                results[i] = (label, [text] if text else [])
        return results
