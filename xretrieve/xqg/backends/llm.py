"""Queries an LLM (`xretrieve/xqg/llm.py`) writes for a passage in the target language."""

from __future__ import annotations

from collections import Counter

from xretrieve.formats import Document
from xretrieve.xqg.shards import derived_seed


class LLMGenerator:
    """Queries an LLM writes for a passage in the target language; replies parsed and checked as in `synthesize`."""

    whole_shard = True  # a shard's prompts at once: an endpoint serves them `--concurrency` at a time

    def __init__(self, llm, max_query_words: int):
        from xretrieve.xqg.llm import XQG_PROMPT_VERSION

        self.llm, self.max_query_words = llm, max_query_words
        self.identity = {**llm.identity, "prompt": XQG_PROMPT_VERSION, "max_query_words": max_query_words}
        identity = llm.identity
        self.label = f"llm:{identity.get('model') or identity.get('name') or identity.get('url')}"
        self.dropped: Counter = Counter()

    def generate(self, docs: list[Document], lang: str, num: int, seed: int) -> list[tuple[str, list[str]]]:
        from xretrieve.xqg.llm import keep_queries, xqg_prompt

        prompts = [xqg_prompt(doc, lang) for doc in docs for _ in range(num)]
        replies = self.llm.complete(prompts, [derived_seed(seed, j) for j in range(len(prompts))])
        return [
            (self.label, keep_queries(replies[i * num : (i + 1) * num], doc, self.max_query_words, self.dropped))
            for i, doc in enumerate(docs)
        ]

    def take_dropped(self) -> dict[str, int]:
        """Replies dropped since the last call, by reason (a shard's record keeps them)."""
        dropped, self.dropped = dict(self.dropped), Counter()
        return dropped
