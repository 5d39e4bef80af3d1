"""Shared fixtures: a tiny random-weight sentence-transformers model built offline, and a seeded fake encoder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

WORDS = (
    "the quick brown fox jumps over lazy dog el zorro marron salta sobre perro perezoso "
    "der schnelle braune fuchs springt ueber den faulen hund la nuit tombe sur la ville "
    "water river sea mountain light dark love peace war king"
).split()


def build_tiny_model(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT with a word-level vocabulary, mean pooling, normalisation and e5-style prompts."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(WORDS)) + ["query:", "passage:"])}
    tokenizer = Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf_dir = folder / "hf"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(hf_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf_dir)
    model = SentenceTransformer(
        modules=[
            models.Transformer(str(hf_dir), max_seq_length=64),
            models.Pooling(hidden, "mean"),
            models.Normalize(),
        ],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    out = folder / "model"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory) -> Path:
    """Same architecture, other weights: a different model of the same dimension."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_b"), seed=1)


class FakeEncoder:
    """Seeded vectors per text (clustered, so approximate indexes behave as on real data); exact and fast.

    Follows the interface of xretrieve.model.BiEncoder that encode/index/search use.
    """

    def __init__(self, dim: int = 16, clusters: int = 20, name: str = "fake", seed: int = 0):
        self.dim, self.name = dim, name
        self.centers = np.random.default_rng(seed).normal(size=(clusters, dim)).astype(np.float32)
        self.fingerprint = hashlib.sha256(f"{name}{dim}{seed}".encode()).hexdigest()[:16]
        self.calls = 0
        self.max_seq_length, self.passage_room = 512, 510  # words stand for tokens (token_lengths)

    @property
    def identity(self) -> dict:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "normalized": True,
            "query_prompt": "",
            "passage_prompt": "",
        }

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        v = self.centers[rng.integers(len(self.centers))] + 0.3 * rng.normal(size=self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_passages(self, texts, batch_size=32, progress=False):
        self.calls += 1
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    encode_queries = encode_passages

    def token_lengths(self, texts):
        return [len(t.split()) for t in texts]


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


LANGS = ("en", "es", "de", "fi", "ja")


def write_corpus(path: Path, n: int, langs=LANGS) -> Path:
    rng = np.random.default_rng(7)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
            f.write(json.dumps({"id": f"d{i}", "text": f"{words} {i}", "lang": langs[i % len(langs)]}) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", 60)
