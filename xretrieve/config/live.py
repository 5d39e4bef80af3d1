"""Settings of the verbs that change a built index: add, delete and compact (xretrieve/update.py, compact.py)."""

from __future__ import annotations

from dataclasses import dataclass

from xretrieve.config.core import CORPUS_HELP
from xretrieve.config.fields import batch_size_option, device_option, option, parse_list, progress_option
from xretrieve.errors import UserError

INDEX_HELP = "index folder (built by `xretrieve index`)"


@dataclass
class AddConfig:
    """Add documents to a built index, or replace those whose id it holds: encoded with the index's own model,
    logged durably, searchable at once; `compact` folds them into the base shards later."""

    index: str = option(help=INDEX_HELP)
    corpus: str = option(help=CORPUS_HELP, input_file=True)
    model: str | None = option(
        None, "the index's model, when its folder has moved (checked against the index)", unset="the index's"
    )
    batch_size: int = batch_size_option()
    commit_every: int = option(
        1000, "documents per logged batch: each is applied whole and, once logged, survives a crash", metavar="N"
    )
    device: str | None = device_option()
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.commit_every < 1:
            raise UserError("--batch-size and --commit-every must be at least 1")


@dataclass
class DeleteConfig:
    """Delete documents from a built index by id (logged durably; gone from searches at once)."""

    index: str = option(help=INDEX_HELP)
    ids: list[str] | None = option(None, "ids to delete, e.g. a,b,c", parse=parse_list, one_of="ids")
    ids_file: str | None = option(None, "a file of ids to delete, one per line", one_of="ids", input_file=True)


@dataclass
class CompactConfig:
    """Fold an index's added and deleted documents into a new generation of its shards (resumable; searches
    keep working on the old generation until the new one is switched in)."""

    index: str = option(help=INDEX_HELP)
    info: bool = option(False, "print the index's generation and pending changes as JSON; change nothing")
    progress: bool = progress_option()
