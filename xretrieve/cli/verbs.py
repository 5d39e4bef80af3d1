"""The verbs, in the order `xretrieve --help` lists them.

A verb is a settings dataclass (its `option` fields are the flags, the first paragraph of its docstring the
help), a handler (cli/handlers.py: settings in, one library call) and its line below.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xretrieve import config as settings
from xretrieve.cli import handlers


@dataclass(frozen=True)
class Verb:
    name: str
    config: type  # the settings dataclass
    handler: Callable[[Any], int | None]  # returns the exit status; None is 0

    @property
    def help(self) -> str:
        doc = inspect.cleandoc(self.config.__doc__ or "")
        if not doc or doc.startswith(f"{self.config.__name__}("):  # dataclass's generated signature
            raise TypeError(f"{self.config.__name__} needs a docstring: the help of `xretrieve {self.name}`")
        return " ".join(doc.split("\n\n")[0].split())


VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb("encode", settings.EncodeConfig, handlers.encode),
        Verb("index", settings.IndexConfig, handlers.index),
        Verb("search", settings.SearchConfig, handlers.search),
        Verb("add", settings.AddConfig, handlers.add),
        Verb("delete", settings.DeleteConfig, handlers.delete),
        Verb("compact", settings.CompactConfig, handlers.compact),
        Verb("evaluate", settings.EvaluateConfig, handlers.evaluate),
        Verb("fuse", settings.FuseConfig, handlers.fuse),
        Verb("reproduce", settings.ReproduceConfig, handlers.reproduce),
        Verb("convert", settings.ConvertConfig, handlers.convert),
        Verb("bm25", settings.Bm25Config, handlers.bm25),
        Verb("save-model", settings.SaveModelConfig, handlers.save_model),
        Verb("generate-queries", settings.GenerateConfig, handlers.generate_queries),
        Verb("synthesize", settings.SynthesizeConfig, handlers.synthesize),
        Verb("adapt", settings.AdaptConfig, handlers.adapt),
        Verb("train-generator", settings.TrainGeneratorConfig, handlers.train_generator),
        Verb("augment", settings.AugmentConfig, handlers.augment),
        Verb("serve", settings.ServerConfig, handlers.serve),
        Verb("train", settings.TrainConfig, handlers.train),
        Verb("distill", settings.DistillConfig, handlers.distill),
        Verb("mine-negatives", settings.MineConfig, handlers.mine_negatives),
        Verb("demo", settings.DemoConfig, handlers.demo),
    )
}
