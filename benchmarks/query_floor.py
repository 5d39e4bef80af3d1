"""Query-latency floor: what the model alone costs per query on this CPU, before any server work.

Issue 8's end-to-end targets (p50 <= 25 ms for one short query; at concurrency 32, 3x the QPS of a server
that encodes each request alone) are bounded by the model: a server cannot answer faster than one
forward pass, and batching cannot gain more than the model's batched/unbatched throughput ratio. This
measures both on the demo queries, alternating the variants round by round so that load from other jobs
falls on all of them alike:

- one query at a time through `BiEncoder.encode_queries` (what `xretrieve serve` runs), torch at 1 and 2
  threads;
- groups of 32 queries encoded together (what the server's micro-batches run);
- the same single-query path with torch's dynamic int8 quantisation of every Linear layer, and the
  cosine of its embeddings to fp32 (would a faster path be faithful?).

Usage: .venv/bin/python benchmarks/query_floor.py [--rounds 5] [--group 32]
Writes results/query_floor.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np

from xretrieve.demo import demo_data
from xretrieve.formats import read_queries
from xretrieve.model import BiEncoder

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the queries per variant")
    parser.add_argument("--group", type=int, default=32, help="queries per batch in the batched variant")
    args = parser.parse_args()

    import torch

    queries = [q.text for q in read_queries(demo_data() / "queries.jsonl")]
    encoder = BiEncoder(None)
    prompt = encoder.model.prompts.get(encoder.query_prompt_name, "")
    lengths = encoder.token_lengths([prompt + q for q in queries])
    quantized = torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear}, dtype=torch.qint8)

    def single(model, threads: int):
        def run(query: str) -> None:
            torch.set_num_threads(threads)
            model.encode([query], prompt_name=encoder.query_prompt_name, convert_to_numpy=True)

        return run

    variants = {
        "fp32, 2 threads": single(encoder.model, 2),
        "fp32, 1 thread": single(encoder.model, 1),
        "int8 dynamic, 2 threads": single(quantized, 2),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    batched: list[float] = []  # seconds per query, in groups of args.group
    rng = random.Random(0)
    for _ in range(args.rounds):
        for name, run in variants.items():
            for query in queries:
                start = time.perf_counter()
                run(query)
                times[name].append(time.perf_counter() - start)
        torch.set_num_threads(2)
        order = rng.sample(queries, len(queries))
        for i in range(0, len(order) - args.group + 1, args.group):
            start = time.perf_counter()
            encoder.encode_queries(order[i : i + args.group], batch_size=args.group)
            batched.append((time.perf_counter() - start) / args.group)

    torch.set_num_threads(2)
    reference = encoder.encode_queries(queries)
    fast = quantized.encode(queries, prompt_name=encoder.query_prompt_name, convert_to_numpy=True)
    cosines = np.sum(reference * fast, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(fast, axis=1))

    single_qps = 1 / statistics.median(times["fp32, 2 threads"])
    batched_qps = 1 / statistics.median(batched)
    result = {
        "benchmark": "query_floor",
        "model": "multilingual-e5-small (embedded)",
        "queries": len(queries),
        "tokens_with_prompt": {"mean": statistics.mean(lengths), "max": max(lengths)},
        "rounds": args.rounds,
        "latency_ms": {
            name: {"p50": percentile(values, 50), "p99": percentile(values, 99)} for name, values in times.items()
        },
        "batched": {"group": args.group, "ms_per_query_p50": statistics.median(batched) * 1000},
        "qps": {"one at a time": single_qps, f"groups of {args.group}": batched_qps},
        "batching_ceiling": batched_qps / single_qps,
        "int8_cosine_to_fp32": {"min": float(cosines.min()), "mean": float(cosines.mean())},
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "load_average_at_end": os.getloadavg(),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "query_floor.md").write_text(report(result))
    print(report(result))


def report(r: dict) -> str:
    rows = "\n".join(f"| {name} | {v['p50']:.1f} | {v['p99']:.1f} |" for name, v in r["latency_ms"].items())
    qps = r["qps"]
    return f"""# Query-latency floor: the embedded model alone, one query at a time and in batches

Produced by `python benchmarks/query_floor.py --rounds {r["rounds"]}`. {r["queries"]} demo queries, \
{r["tokens_with_prompt"]["mean"]:.1f} tokens on average with the `query: ` prompt (at most \
{r["tokens_with_prompt"]["max"]}); {r["machine"]["cpus"]} CPUs, torch {r["machine"]["torch"]}; load average at \
the end {", ".join(f"{x:.1f}" for x in r["machine"]["load_average_at_end"])}. Variants alternate round by round.

| one query at a time | p50 ms | p99 ms |
| --- | ---: | ---: |
{rows}

Throughput at 2 threads: {qps["one at a time"]:.1f} queries/s one at a time, \
{list(qps.values())[1]:.1f} queries/s in groups of {r["batched"]["group"]}: batching can raise a server's QPS \
by at most {r["batching_ceiling"]:.2f}x over one that encodes each request alone.

Dynamic int8 (every Linear layer) against fp32 embeddings of the same queries: cosine min \
{r["int8_cosine_to_fp32"]["min"]:.4f}, mean {r["int8_cosine_to_fp32"]["mean"]:.4f}.
"""


if __name__ == "__main__":
    main()
