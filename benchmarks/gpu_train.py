"""`xretrieve train` on CUDA: fp32 against bf16 (and fp16), plain and cached MNRL, on a small BERT built here.

Checks that the GPU path really runs on the GPU with mixed precision, that the loss falls, and that the saved
folder loads and encodes; times each setting side by side in one run. Prints JSON (also OUT/gpu_train.json).
Needs a CUDA GPU and the `train` extra; about a minute.

    python benchmarks/gpu_train.py --out /tmp/gpu-train [--steps 40] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

WORDS = [f"w{i}" for i in range(2000)]


def build_model(folder: Path, hidden: int = 256, layers: int = 4) -> Path:
    """A random-weight BERT (word-level vocabulary of 2,000 words), mean pooling, normalised, e5-style prompts."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query:", "passage:"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = folder / "hf"
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    ).save_pretrained(hf)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    model = SentenceTransformer(
        modules=[
            modules.Transformer(str(hf), max_seq_length=128),
            modules.Pooling(hidden, "mean"),
            modules.Normalize(),
        ],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    model.save(str(folder / "model"))
    return folder / "model"


def write_pairs(path: Path, n: int) -> None:
    """Learnable pairs: the passage holds the query's words in another order, plus filler, in 4 'languages'."""
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = rng.sample(WORDS, 8)
            passage = words[::-1] + rng.sample(WORDS, 24)
            f.write(
                json.dumps(
                    {
                        "query_id": f"q{i}",
                        "query": " ".join(words),
                        "query_lang": "abcd"[i % 4],
                        "positive_passages": [{"docid": f"p{i}", "title": "", "text": " ".join(passage)}],
                        "negative_passages": [{"docid": f"n{i}", "title": "", "text": " ".join(rng.sample(WORDS, 32))}],
                    }
                )
                + "\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    import torch

    from xretrieve.config import TrainConfig
    from xretrieve.model import BiEncoder
    from xretrieve.train import train

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = build_model(out / "base")
    pairs = out / "pairs.jsonl"
    write_pairs(pairs, args.steps * args.batch_size)
    conditions = [
        ("fp32", "fp32", None),
        ("bf16", "bf16", None),
        ("fp16", "fp16", None),
        ("bf16-cached", "bf16", args.batch_size // 4),
    ]
    results = {"device": torch.cuda.get_device_name(0), "steps": args.steps, "batch_size": args.batch_size}
    for name, precision, mini in conditions:
        model_dir = out / f"model-{name}"
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        train(
            TrainConfig(
                train_data=str(pairs),
                out=str(model_dir),
                model=str(base),
                max_steps=args.steps,
                batch_size=args.batch_size,
                mini_batch_size=mini,
                negatives=1,
                learning_rate=2e-4,
                precision=precision,
                device="cuda",
                logging_steps=max(1, args.steps // 8),
                save_steps=args.steps,
                progress=False,
                seed=0,
            )
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        history = json.loads((model_dir / "training.json").read_text())["log_history"]
        losses = [h["loss"] for h in history if "loss" in h]
        settings = json.loads((model_dir / "xretrieve.json").read_text())["training"]
        encoder = BiEncoder(str(model_dir), device="cuda")
        vectors = encoder.encode_queries(["w1 w2 w3", "w4 w5 w6"])
        results[name] = {
            "seconds_total": round(seconds, 2),
            "train_runtime_s": next(h["train_runtime"] for h in history if "train_runtime" in h),
            "steps_per_s": next(h["train_steps_per_second"] for h in history if "train_steps_per_second" in h),
            "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "loss_fell": losses[-1] < losses[0],
            "trained_on": settings["device"],
            "saved_model_encodes_on_cuda": bool(vectors.shape == (2, encoder.dim)),
            "encoder_device": str(encoder.model.device),
        }
    results["bf16_speedup_vs_fp32"] = round(results["fp32"]["train_runtime_s"] / results["bf16"]["train_runtime_s"], 2)
    (out / "gpu_train.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
