"""Encoding cost per passage on one GPU, for the capacity plan's GPU hours (see benchmarks/capacity.py).

What one Ray encoder actor with a GPU does: the transformer forward, mean pooling and normalisation over
Wikipedia-length passages, batched by length. Models of multilingual-e5-small's shape (384-d) and
e5-base's shape (768-d, 12 layers) with random weights: the cost is the shape's, whatever the weights,
and no model files need to travel. Token lengths come from benchmarks/results/capacity.json (the real
passages tokenized by the embedded model). Needs only torch and transformers:

    python benchmarks/gpu_ray.py --out DIR     # prints JSON, writes DIR/gpu_ray.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def passages_per_second(hidden: int, dtype, lengths: list[int], passages: int, batch_size: int) -> float:
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=250037,
        hidden_size=hidden,
        num_hidden_layers=12,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        max_position_embeddings=514,
    )
    model = BertModel(config).to("cuda", dtype).eval()
    generator = torch.Generator().manual_seed(0)
    sizes = sorted((lengths[i % len(lengths)] + 2 for i in range(passages)), reverse=True)  # + CLS and SEP
    batches = []
    for start in range(0, passages, batch_size):
        chunk = sizes[start : start + batch_size]
        ids = torch.randint(5, 250000, (len(chunk), chunk[0]), generator=generator)
        mask = (torch.arange(chunk[0])[None, :] < torch.tensor(chunk)[:, None]).long()
        batches.append((ids.cuda(), mask.cuda()))

    def run() -> None:
        for ids, mask in batches:
            hidden_states = model(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()

    with torch.inference_mode():
        run()  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        return passages / (time.perf_counter() - start)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--passages", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    capacity = RESULTS / "capacity.json"
    lengths = json.loads(capacity.read_text())["encoding"]["token_lengths"] if capacity.is_file() else [180]
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "passages": args.passages,
        "batch_size": args.batch_size,
        "mean_tokens": sum(lengths) / len(lengths),
        "passages_per_second": {},
    }
    for hidden in (384, 768):
        for name, dtype in (("float32", torch.float32), ("float16", torch.float16)):
            rate = passages_per_second(hidden, dtype, lengths, args.passages, args.batch_size)
            result["passages_per_second"][f"{hidden}-{name}"] = round(rate, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_ray.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
