"""Batches drawn by language (`--batches same-language|mixed`, `--language-alpha`) for the Hugging Face trainer."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np


def _batch_sampler_base():
    from sentence_transformers.base.sampler import DefaultBatchSampler

    return DefaultBatchSampler


def language_batch_sampler(languages: list[str], same_language: bool, alpha: float, keys: list[str]) -> Callable:
    """What the trainer calls with (dataset, batch_size, drop_last, ..., seed) to get a LanguageBatchSampler;
    a partial of a module function, since the trainer pickles its arguments into each checkpoint."""
    return functools.partial(
        _make_language_batch_sampler, languages=languages, same_language=same_language, alpha=alpha, keys=keys
    )


def _make_language_batch_sampler(
    dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0, **settings
):
    sampler_class = _language_batch_sampler_class()
    return sampler_class(dataset, batch_size, drop_last, valid_label_columns, generator, seed, **settings)


_SAMPLER_CLASS = None


def _language_batch_sampler_class():
    """Defined on first use: its base class lives in sentence-transformers, a heavy import."""
    global _SAMPLER_CLASS
    if _SAMPLER_CLASS is not None:
        return _SAMPLER_CLASS

    class LanguageBatchSampler(_batch_sampler_base()):
        """Batches drawn by language: a language is picked with weight n**alpha (n: its examples; alpha 1 is
        proportional, 0 uniform, as XLM-R samples languages), each language's examples are served in a
        shuffled order that is reshuffled when used up. `same_language`: the whole batch from one language;
        else each slot picks its own. No two examples of a batch share a key (their positive passage), as
        a duplicate positive would be a false in-batch negative. Deterministic in (seed, epoch), so a resumed
        run sees the same batches the interrupted one would have."""

        def __init__(
            self,
            dataset,
            batch_size,
            drop_last,
            valid_label_columns=None,
            generator=None,
            seed=0,
            *,
            languages,
            same_language,
            alpha,
            keys,
        ):
            super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
            if len(languages) != len(dataset):
                raise ValueError("one language per dataset row")
            self.same_language = same_language
            self.keys = keys
            self.pools = {}
            for row, lang in enumerate(languages):
                self.pools.setdefault(lang, []).append(row)
            self.names = sorted(self.pools)
            weights = np.array([len(self.pools[n]) for n in self.names], dtype=float) ** alpha
            self.weights = weights / weights.sum()

        def __len__(self) -> int:
            rows = sum(len(p) for p in self.pools.values())
            return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

        def __iter__(self):
            yield from _draw_batches(self, np.random.default_rng([self.seed, self.epoch]))

    _SAMPLER_CLASS = LanguageBatchSampler
    return _SAMPLER_CLASS


def _draw_batches(sampler, rng):
    """The batches of one epoch of a LanguageBatchSampler: as many as its length, drawn with `rng`."""
    queues = {n: [] for n in sampler.names}

    def take(lang: str, taken: set[str]) -> int | None:
        pool = sampler.pools[lang]
        for _ in range(2 * len(pool)):  # one pass over a fresh shuffle is enough to find a new key
            if not queues[lang]:
                queues[lang] = list(rng.permutation(pool)[::-1])
            row = int(queues[lang].pop())
            if sampler.keys[row] not in taken:
                return row
        return None

    for _ in range(len(sampler)):
        batch: list[int] = []
        taken: set[str] = set()
        if sampler.same_language:
            lang = sampler.names[rng.choice(len(sampler.names), p=sampler.weights)]
            size = min(sampler.batch_size, len({sampler.keys[r] for r in sampler.pools[lang]}))
            while len(batch) < size and (row := take(lang, taken)) is not None:
                batch.append(row)
                taken.add(sampler.keys[row])
        else:
            for _ in range(sampler.batch_size * 4):
                if len(batch) == sampler.batch_size:
                    break
                row = take(sampler.names[rng.choice(len(sampler.names), p=sampler.weights)], taken)
                if row is not None:
                    batch.append(row)
                    taken.add(sampler.keys[row])
        yield batch
