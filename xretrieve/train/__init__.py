"""Fine-tune a bi-encoder (extra `train`): contrastive training with in-batch and hard negatives
(`contrastive.py`, `xretrieve train`), hard-negative mining from our own index (`mine.py`,
`xretrieve mine-negatives`), and multilingual distillation (`distillation.py`, `xretrieve distill`).

Training runs on sentence-transformers' trainer, so checkpoints, resume, mixed precision and logging are
the Hugging Face Trainer's. The result is a plain sentence-transformers folder carrying its prompts, plus
`xretrieve.json` (which prompt encodes which side) and `training.json` (settings and loss history).

The names below were `xretrieve/train.py`'s and stay importable from here. Importing the package is cheap:
sentence-transformers and torch load inside the functions.
"""

from xretrieve.train.contrastive import DEV_MEASURES, train
from xretrieve.train.data import batch_languages, contrastive_dataset, load_examples, negatives_per_example
from xretrieve.train.distillation import distill
from xretrieve.train.mine import mine_negatives

# checkpoints pickle the batch sampler's factory by its module path: those of train.py name it here
from xretrieve.train.sampler import _make_language_batch_sampler, language_batch_sampler

__all__ = [
    "DEV_MEASURES",
    "_make_language_batch_sampler",
    "batch_languages",
    "contrastive_dataset",
    "distill",
    "language_batch_sampler",
    "load_examples",
    "mine_negatives",
    "negatives_per_example",
    "train",
]
