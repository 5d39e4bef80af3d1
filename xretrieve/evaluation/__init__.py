"""Measuring retrieval: `evaluate.py` (trec_eval's measures and XOR-Retrieve's R@kt, `xretrieve evaluate`),
`fuse.py` (hybrid fusion of runs, `xretrieve fuse`), `bm25.py` (the pyserini BM25 baseline, `xretrieve bm25`)
and `reproduce.py` (reproduction files: command plus expected score, `xretrieve reproduce`).

Named `evaluation`, not `eval`: `from xretrieve import eval` would shadow the builtin in the importing module
(sentence-transformers names its folder `evaluation/` too). Importing it is cheap.
"""
