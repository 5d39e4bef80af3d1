"""Writing queries for passages, in many languages (xQG: Zhuang et al., SIGIR 2023; SWIM-IR: Thakur et al.,
NAACL 2024).

- `backends/`: the generators, one call `generate(docs, lang, num, seed)` each (seq2seq, Apertium, LLM);
- `generate.py`: `xretrieve generate-queries`, sharded and resumable;
- `train_generator.py` (+ `checkpoints.py`, `template.py`): `xretrieve train-generator`, fine-tuning a seq2seq
  generator with its own resumable loop;
- `augment.py`: `xretrieve augment`, folding the generated queries into the passages' embeddings;
- `synthesize.py` (+ `llm.py`): `xretrieve synthesize`, SWIM-IR training rows from an LLM or Apertium;
- `shards.py`: the sharded, resumable run that generate-queries and synthesize share.

Importing it is cheap: models and torch load inside the functions that need them.
"""
