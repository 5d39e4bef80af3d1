"""The xQG CUDA paths, exercised and timed against the CPU: train-generator, generate-queries (seq2seq
sampling) and augment (query encoding with the embedded e5-small), on 256 bible-xling passages.

    python benchmarks/gpu_qgen.py --out DIR      # prints JSON, also written to DIR/gpu_qgen.json

Checks: training loss falls on cuda; sampling on cuda repeats exactly with the same seed; augmented
vectors built on cuda match those built on the CPU (max abs difference). About a minute on one GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xretrieve.config import AugmentConfig, EncodeConfig, GenerateConfig, TrainGeneratorConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.xqg.augment import augment_embeddings
from xretrieve.xqg.generate import generate_queries
from xretrieve.xqg.train_generator import init_t5, train_generator

DATA = Path(__file__).parent / "data" / "bible-xling"


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, round(time.perf_counter() - started, 2)


def vectors(folder: Path) -> np.ndarray:
    embeddings = Embeddings(folder)
    return np.concatenate([np.asarray(embeddings.vectors(i)) for i in range(len(embeddings.shards))])


def main() -> None:
    import torch

    from xretrieve.model import BiEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: dry run)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    corpus.write_text("".join((DATA / "corpus.jsonl").read_text(encoding="utf-8").splitlines(True)[: args.passages]))
    train_rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [r["query"] for r in train_rows] + [p["text"] for r in train_rows for p in r["positive_passages"]]
    t5 = init_t5(texts, out / "t5", vocab_size=8000, d_model=256, layers=2)
    gpu = args.device
    name = torch.cuda.get_device_name(0) if gpu.startswith("cuda") else gpu
    report: dict = {"device": name, "passages": args.passages}

    def train(device: str, steps: int) -> dict:
        config = TrainGeneratorConfig(
            model=str(t5),
            out=str(out / f"gen-{device}-{steps}"),
            train=str(DATA / "train.jsonl"),
            max_steps=steps,
            batch_size=32,
            learning_rate=1e-3,
            save_steps=steps,
            device=device,
            progress=False,
        )
        folder, seconds = timed(train_generator, config)
        settings = json.loads((folder / "xretrieve-generator.json").read_text())
        return {
            "steps": steps,
            "seconds": seconds,
            "steps_per_s": round(steps / seconds, 2),
            "loss": settings["final_loss"],
        }

    report["train_cpu"] = train("cpu", 5)
    report["train_cuda"] = train(gpu, args.steps)
    report["train_speedup"] = round(report["train_cuda"]["steps_per_s"] / report["train_cpu"]["steps_per_s"], 1)
    generator = str(out / f"gen-{gpu}-{args.steps}")

    def generate(device: str, name: str, passages: int) -> tuple[Path, dict]:
        small = out / f"corpus-{passages}.jsonl"
        small.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(True)[:passages]))
        config = GenerateConfig(
            corpus=str(small),
            out=str(out / name),
            langs=["en", "es"],
            generator=generator,
            num_queries=5,
            max_new_tokens=32,
            batch_size=64,
            device=device,
            progress=False,
        )
        path, seconds = timed(generate_queries, config)
        count = sum(1 for _ in path.open(encoding="utf-8"))
        return path, {"queries": count, "seconds": seconds, "queries_per_s": round(count / seconds, 1)}

    _, report["generate_cpu"] = generate("cpu", "genq-cpu.jsonl", 32)
    first, report["generate_cuda"] = generate(gpu, "genq-cuda.jsonl", args.passages)
    again, _ = generate(gpu, "genq-cuda-again.jsonl", args.passages)
    report["generate_speedup"] = round(
        report["generate_cuda"]["queries_per_s"] / report["generate_cpu"]["queries_per_s"], 1
    )
    report["cuda_sampling_repeats"] = first.read_bytes() == again.read_bytes()

    fused = {}
    for device in ("cpu", gpu):
        encoder = BiEncoder(device=device)
        emb = out / f"emb-{device}"
        _, encode_seconds = timed(encode_corpus, EncodeConfig(str(corpus), str(emb), progress=False), encoder)
        config = AugmentConfig(str(emb), str(first), str(out / f"aug-{device}"), alpha=0.01, progress=False)
        _, seconds = timed(augment_embeddings, config, encoder)
        side = "cpu" if device == "cpu" and "augment_cpu" not in report else "cuda"
        report[f"augment_{side}"] = {"encode_seconds": encode_seconds, "augment_seconds": seconds}
        fused[side] = vectors(out / f"aug-{device}")
    report["augment_cuda_vs_cpu_max_abs_diff"] = float(np.abs(fused["cuda"] - fused["cpu"]).max())
    text = json.dumps(report, indent=2)
    (out / "gpu_qgen.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
