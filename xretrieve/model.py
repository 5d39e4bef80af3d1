"""Load a bi-encoder by name or folder; prompts, pooling and normalisation come from its saved config."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from xretrieve.config.core import POOLING_MODES  # save-model --pooling offers these
from xretrieve.embedded import EMBEDDED_MODEL_NAME, embedded_model_path
from xretrieve.errors import UserError

DEFAULT_MODEL = EMBEDDED_MODEL_NAME
QUERY_PROMPT_NAMES = ("query",)
PASSAGE_PROMPT_NAMES = ("passage", "document", "doc")
_FINGERPRINT_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt")


def resolve_model(name_or_path: str | None) -> str:
    """Where a model loads from: the embedded default by its alias, a local folder by its absolute path, else a
    hub name as given."""
    return _name_and_location(name_or_path)[1]


def _name_and_location(name_or_path: str | None) -> tuple[str, str]:
    """(the name manifests record, where it loads from): the one place a model name is defaulted and resolved."""
    name = name_or_path or DEFAULT_MODEL
    if os.path.isdir(name):
        name = str(Path(name).resolve())  # indexes name it: valid from any working folder
        return name, name
    if name == EMBEDDED_MODEL_NAME:
        return name, str(embedded_model_path())
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise UserError(f"--model {name}: no such model folder")
    return name, name


def folder_fingerprint(folder: str | Path, samples: int = 32, sample_bytes: int = 4096) -> str:
    """A cheap identity of a model folder: names, sizes and sampled bytes of its files.

    Sampling (rather than hashing 500 MB) still changes whenever any fine-tuned weight changes.
    """
    digest = hashlib.sha256()
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES and p.name != "README.md" and not p.name.startswith(".")
    )
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as f:
            step = max(size // samples, 1)
            for offset in range(0, size, step):
                f.seek(offset)
                digest.update(f.read(sample_bytes))
    return digest.hexdigest()[:16]


def locate_model(name_or_path: str | None) -> tuple[str, str, str | None]:
    """(the name manifests record, where it loads from, its fingerprint), without loading it: no torch."""
    name, location = _name_and_location(name_or_path)
    return name, location, folder_fingerprint(location) if os.path.isdir(location) else None


def read_identity(name_or_path: str | None) -> dict[str, Any] | None:
    """What `BiEncoder(name_or_path).identity` says, read from the model folder's configuration files without
    loading the weights (no torch), so that a Ray driver or an index build knows the model it names for the
    price of a few small files. None for a hub name, or a folder built of modules this does not know:
    loading it is then the only way to tell (`model_identity`)."""
    name, location, fingerprint = locate_model(name_or_path)
    folder = Path(location)
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else None
    if not isinstance(modules, list):
        return None
    dim, normalized = None, False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        settings_path = folder / str(module.get("path", "")) / "config.json"
        settings = _read_json(settings_path) if settings_path.is_file() else None
        if kind == "Normalize":
            normalized = True
        elif kind in ("Pooling", "Dense") and isinstance(settings, dict):
            dim = _pooling_dim(settings) if kind == "Pooling" else settings.get("out_features")
        elif kind != "Transformer":
            return None
    if not isinstance(dim, int):
        return None
    config = folder / "config_sentence_transformers.json"
    prompts = (_read_json(config).get("prompts") if config.is_file() else None) or {}
    query_name, passage_name = _prompt_names(location, prompts)
    return {
        "name": name,
        "fingerprint": fingerprint,
        "dim": dim,
        "normalized": normalized,
        "query_prompt": prompts.get(query_name, "") if query_name else "",
        "passage_prompt": prompts.get(passage_name, "") if passage_name else "",
    }


def model_identity(name_or_path: str | None) -> dict[str, Any]:
    """The model's identity: read from its folder (`read_identity`), or, where the folder cannot tell, from
    the model loaded on the CPU."""
    return read_identity(name_or_path) or BiEncoder(name_or_path).identity


def _pooling_dim(settings: dict) -> int | None:
    """A Pooling module's output width: its input's, once per pooling mode it concatenates."""
    width = settings.get("embedding_dimension", settings.get("word_embedding_dimension"))
    if not isinstance(width, int):
        return None
    modes = settings.get("pooling_mode")
    if modes is None:  # the older layout: one boolean per mode
        count = sum(1 for key, on in settings.items() if key.startswith("pooling_mode_") and on is True)
    else:
        count = len(modes) if isinstance(modes, list) else 1
    return width * count if count else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _prompt_names(location: str, prompts: dict[str, str]) -> tuple[str | None, str | None]:
    """The names of the query and passage prompts: as the folder's xretrieve.json says, else the first
    conventional name with a prompt."""
    path = Path(location) / "xretrieve.json"
    settings = _read_json(path) if path.is_file() else {}
    if not isinstance(settings, dict):
        raise UserError(f"{path}: expected a JSON object of settings")
    return (
        settings.get("query_prompt_name") or _pick_prompt(prompts, QUERY_PROMPT_NAMES),
        settings.get("passage_prompt_name") or _pick_prompt(prompts, PASSAGE_PROMPT_NAMES),
    )


def _pick_prompt(prompts: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if prompts.get(n)), None)


class BiEncoder:
    """One encoder for queries and passages, wrapping a sentence-transformers model."""

    def __init__(self, name_or_path: str | None = None, device: str | None = None, max_seq_length: int | None = None):
        # a missing folder fails here, before torch is imported
        self.name, location, self.fingerprint = locate_model(name_or_path)

        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per model load is noise in CLI output
        try:
            self.model = SentenceTransformer(location, device=device or "cpu")
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load model {self.name!r}: {str(exc).splitlines()[0]} "
                "(model hubs may be unreachable here: pass a local model folder)"
            ) from None
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.query_prompt_name, self.passage_prompt_name = _prompt_names(location, self.model.prompts or {})
        self.normalized = any(isinstance(module, Normalize) for module in self.model)
        self.dim = int(self.model.get_embedding_dimension())
        self._counter, self._counting = None, threading.Lock()  # see token_lengths

    @property
    def identity(self) -> dict[str, Any]:
        """What manifests record, and what an index checks its query encoder against."""
        prompts = self.model.prompts or {}
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "normalized": self.normalized,
            "query_prompt": prompts.get(self.query_prompt_name, "") if self.query_prompt_name else "",
            "passage_prompt": prompts.get(self.passage_prompt_name, "") if self.passage_prompt_name else "",
        }

    def _encode(self, texts: list[str], prompt_name: str | None, batch_size: int, progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
        ).astype(np.float32, copy=False)

    def encode_queries(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.query_prompt_name, batch_size, progress)

    def encode_passages(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.passage_prompt_name, batch_size, progress)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token counts without special tokens, at most the model's max_seq_length (what encoding them costs);
        used to sort batches by length and to budget the server's.

        Counted with a copy of the tokenizer, one call at a time: a fast tokenizer switches its padding and
        truncation settings per call, so counting while another thread encodes broke that encode's padding."""
        limit = self.model.max_seq_length
        with self._counting:
            if self._counter is None:
                self._counter = copy.deepcopy(self.model.tokenizer)
            ids = self._counter(
                texts, add_special_tokens=False, truncation=limit is not None, max_length=limit, verbose=False
            )
        return [len(row) for row in ids["input_ids"]]

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads per text, special tokens and prompt included; the rest is cut off."""
        return int(self.model.max_seq_length or self.model.tokenizer.model_max_length)

    @property
    def passage_room(self) -> int:
        """Tokens of passage text that fit in `max_seq_length` beside the special tokens and passage prompt."""
        tokenizer = self.model.tokenizer
        prompt = self.identity["passage_prompt"]
        prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
        return self.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False) - prompt_tokens


def check_compatible(index_model: dict[str, Any], encoder: BiEncoder, where: str) -> None:
    """Refuse to search an index with a query encoder other than the one that built it."""
    if index_model.get("dim") != encoder.dim:
        raise UserError(
            f"{where}: index vectors have dimension {index_model.get('dim')} but model {encoder.name!r} "
            f"encodes {encoder.dim}: search with the model the index was built with ({index_model.get('name')!r})"
        )
    built_with, using = index_model.get("fingerprint"), encoder.fingerprint
    if built_with and using and built_with != using:
        raise UserError(
            f"{where}: index was built with model {index_model.get('name')!r} (fingerprint {built_with}) "
            f"but the query encoder is {encoder.name!r} (fingerprint {using}): use the same model"
        )


def save_model(
    source: str,
    out: str,
    pooling: str = "mean",
    max_seq_length: int | None = None,
    query_prompt: str = "",
    passage_prompt: str = "",
    normalize: bool = False,
) -> Path:
    """Write a sentence-transformers folder for a transformers model, with the pooling, length, prompts and
    normalisation its published runs used, so that it loads with that behaviour everywhere after."""
    import shutil
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if pooling not in POOLING_MODES:
        raise UserError(f"--pooling {pooling!r}: choose one of {', '.join(POOLING_MODES)}")
    out_path = Path(out)
    if out_path.exists():
        raise UserError(f"{out}: already exists; choose a new --out")
    try:
        transformer = Transformer(resolve_model(source), max_seq_length=max_seq_length)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model {source!r}: {str(exc).splitlines()[0]}") from None
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    prompts = {name: text for name, text in (("query", query_prompt), ("passage", passage_prompt)) if text}
    model = SentenceTransformer(modules=modules, prompts=prompts, device="cpu")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_path.parent, prefix=f".{out_path.name}."))
    try:
        model.save(str(staging / "model"))
        os.rename(staging / "model", out_path)  # atomic: no half-written model folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_path
