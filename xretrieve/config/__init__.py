"""One settings dataclass per verb: the only declaration of each verb's flags (name, type, default, help).

No torch or faiss here: the CLI builds these cheaply. Each field declared with `fields.option` is a flag;
`xretrieve/cli/flags.py` generates argparse, `--config` and `--print-config` from them.

| module | verbs |
| --- | --- |
| `fields` | how a field declares its flag; parsers of flag text (shards, language lists, weights) |
| `core` | encode, index, search, save-model, demo |
| `serve` | serve (and its API-key and address checks) |
| `train` | train, distill, mine-negatives |
| `xqg` | generate-queries, train-generator, augment; the LLM flags |
| `synthesis` | synthesize, adapt |
| `eval` | evaluate, fuse, reproduce, convert, bm25 |
| `live` | add, delete, compact |
"""

from xretrieve.config.core import (
    POOLING_MODES,
    STORAGE_DTYPES,
    DemoConfig,
    EncodeConfig,
    IndexConfig,
    SaveModelConfig,
    SearchConfig,
)
from xretrieve.config.eval import Bm25Config, ConvertConfig, EvaluateConfig, FuseConfig, ReproduceConfig
from xretrieve.config.fields import option, parse_lang_weights, parse_langs, parse_list, parse_shard
from xretrieve.config.live import AddConfig, CompactConfig, DeleteConfig
from xretrieve.config.serve import ServerConfig
from xretrieve.config.synthesis import AdaptConfig, SynthesizeConfig
from xretrieve.config.train import BATCH_MODES, PRECISIONS, DistillConfig, MineConfig, TrainConfig
from xretrieve.config.xqg import (
    AUGMENT_MODES,
    GENERATOR_BACKENDS,
    MT_BACKENDS,
    AugmentConfig,
    GenerateConfig,
    TrainGeneratorConfig,
    check_llm_settings,
)

__all__ = [
    "AddConfig",
    "CompactConfig",
    "DeleteConfig",
    "AUGMENT_MODES",
    "BATCH_MODES",
    "GENERATOR_BACKENDS",
    "MT_BACKENDS",
    "POOLING_MODES",
    "PRECISIONS",
    "STORAGE_DTYPES",
    "AdaptConfig",
    "AugmentConfig",
    "Bm25Config",
    "ConvertConfig",
    "DemoConfig",
    "DistillConfig",
    "EncodeConfig",
    "EvaluateConfig",
    "FuseConfig",
    "GenerateConfig",
    "IndexConfig",
    "MineConfig",
    "ReproduceConfig",
    "SaveModelConfig",
    "SearchConfig",
    "ServerConfig",
    "SynthesizeConfig",
    "TrainConfig",
    "TrainGeneratorConfig",
    "check_llm_settings",
    "option",
    "parse_lang_weights",
    "parse_langs",
    "parse_list",
    "parse_shard",
]
