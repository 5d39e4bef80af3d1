"""Query generation for passage augmentation (xQG): generator backends, generator training, sharded generation.

Two backends answer one call, `generate(docs, lang, num, seed) -> [(label, [query, ...]) per doc]`:
- `Seq2SeqGenerator`: any Hugging Face seq2seq model (mT5, mBART, T5), sampled with top-k as in xQG
  (Zhuang et al., SIGIR 2023): input "Generate a {language} question for this passage: {title} {passage}".
- `TranslationGenerator`: a pseudo-query is the passage's title and leading sentence, machine-translated
  offline by Apertium (Debian packages), pivoting through other languages where no direct pair exists.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xretrieve.config import GenerateConfig, TrainGeneratorConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document, GeneratedQuery, read_corpus, write_generated
from xretrieve.manifest import (
    atomic_open,
    atomic_write_json,
    checksums,
    finished_records,
    load_shard_record,
    sha256_file,
    shard_name,
    write_shard_record,
)
from xretrieve.text import LANGUAGES, check_languages, language_name  # noqa: F401 (importable from here too)

DEFAULT_TEMPLATE = "Generate a {language} question for this passage: {title} {passage}"
GENERATOR_SETTINGS = "xretrieve-generator.json"  # saved with a trained generator: its prompt template

# ISO 639-1 code -> (English name for the prompt, ISO 639-3 code as some Apertium modes name languages)
_ISO3 = {iso3: code for code, (_, iso3) in LANGUAGES.items()}


def render_prompt(template: str, lang: str, doc: Document) -> str:
    return " ".join(template.format(language=language_name(lang), title=doc.title, passage=doc.text).split())


def _derived_seed(*parts: int) -> int:
    """A seed for one batch from (run seed, shard, language, batch): the same wherever and whenever it runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# --- backend 1: Hugging Face seq2seq ----------------------------------------------------------------------------


class Seq2SeqGenerator:
    """Sampled queries from a seq2seq model; the prompt template comes from the model folder when it has one."""

    whole_shard = False  # batches of --batch-size

    def __init__(
        self,
        name_or_path: str,
        device: str | None = None,
        top_k: int = 10,
        max_new_tokens: int = 64,
        max_input_tokens: int = 512,
    ):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        from xretrieve.model import folder_fingerprint

        transformers_logging.disable_progress_bar()
        local = os.path.isdir(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load generator {name_or_path!r}: {str(exc).splitlines()[0]} "
                "(model hubs may be unreachable here: pass a local seq2seq model folder)"
            ) from None
        self.device = device or "cpu"
        self.model.to(self.device).eval()
        settings = Path(name_or_path) / GENERATOR_SETTINGS
        self.template = json.loads(settings.read_text())["template"] if settings.is_file() else DEFAULT_TEMPLATE
        self.top_k, self.max_new_tokens, self.max_input_tokens = top_k, max_new_tokens, max_input_tokens
        self.name = str(Path(name_or_path).resolve()) if local else name_or_path
        self.identity = {
            "backend": "seq2seq",
            "name": self.name,
            "fingerprint": folder_fingerprint(name_or_path) if local else None,
            "template": self.template,
            "top_k": top_k,
            "max_new_tokens": max_new_tokens,
            "max_input_tokens": max_input_tokens,
        }

    def generate(self, docs: list[Document], lang: str, num: int, seed: int) -> list[tuple[str, list[str]]]:
        import torch

        prompts = [render_prompt(self.template, lang, doc) for doc in docs]
        inputs = self.tokenizer(
            prompts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_input_tokens
        ).to(self.device)
        torch.manual_seed(seed)  # seeds every device: sampling repeats exactly on the same hardware
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=True,
                top_k=self.top_k,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=num,
            )
        texts = [" ".join(t.split()) for t in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
        return [(self.name, [t for t in texts[i * num : (i + 1) * num] if t]) for i in range(len(docs))]


# --- backend 2: offline machine translation (Apertium) -----------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?。！？؟])\s+")


def lead_text(doc: Document, max_words: int) -> str:
    """Title and leading sentence, cut to `max_words` words: what a pseudo-query is translated from."""
    first = _SENTENCE_END.split(doc.text.strip(), maxsplit=1)[0]
    return " ".join(f"{doc.title} {first}".split()[:max_words])


def key_texts(doc: Document, count: int, max_words: int) -> list[str]:
    """Up to `count` texts to translate into pseudo-queries: the lead text, then the title with each of the
    longest other sentences (longest first; the longest sentences carry the most content words)."""
    others = [s for s in _SENTENCE_END.split(doc.text.strip())[1:] if s.strip()]
    longest = sorted(others, key=lambda s: -len(s.split()))[: count - 1]  # stable: ties keep passage order
    return [lead_text(doc, max_words)] + [" ".join(f"{doc.title} {s}".split()[:max_words]) for s in longest]


def _mode_languages(mode: str) -> tuple[str, str] | None:
    """'eng-spa' or 'es-fr' -> ('en', 'es'); None for variants ('spa-eng_US', 'eco-es-fr') and unknown codes."""
    parts = mode.split("-")
    if len(parts) != 2 or any("_" in p for p in parts):
        return None
    codes = tuple(p if p in LANGUAGES else _ISO3.get(p) for p in parts)
    return codes if all(codes) else None  # type: ignore[return-value]


# characters with a meaning in Apertium's stream format, escaped on the way in (its txt deformatter does this)
_STREAM_SPECIAL = re.compile(r"([\\\[\]{}^$/<>@*#~+|])")
_ESCAPED = re.compile(r"\\(.)")
_MARKS = re.compile(r"<[^<>\s]*>|(?<!\S)[*#@~]")  # leaked tags, unknown/untranslated-word marks


def _modes_folder(command: str) -> Path:
    """Where `apertium` reads its modes: PREFIX/share/apertium/modes beside PREFIX/bin/apertium."""
    return Path(command).resolve().parent.parent / "share" / "apertium" / "modes"


class ApertiumPipe:
    """One mode's pipeline (lt-proc, tagger, transfer, generator...) kept running in null-flush mode."""

    def __init__(self, command: str, mode: str):
        mode_file = _modes_folder(command) / f"{mode}.mode"
        listed = subprocess.run(
            ["apertium-wblank-mode", "-z", str(mode_file)], capture_output=True, text=True, check=False
        )
        if listed.returncode != 0 or not listed.stdout.strip():
            raise UserError(f"apertium mode {mode}: cannot read {mode_file}: {listed.stderr.strip()[:200]}")
        # $1 is the generator's option (-n: no marks on unknown words), $2 the tagger's (none)
        pipeline = listed.stdout.strip().replace("$1", "-n").replace("$2", "")
        self.mode = mode
        self.process = subprocess.Popen(
            ["bash", "-c", pipeline],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: closing it ends every stage, not only bash
        )
        self.lock = threading.Lock()

    def translate(self, texts: list[str]) -> list[str]:
        """Each text in, NUL-ended; as many NUL-ended translations out. A thread writes while this one reads,
        so a long list never fills both pipes at once."""
        # a trailing blank makes each stage emit its last word before the NUL instead of waiting for more input
        data = b"".join(
            (_STREAM_SPECIAL.sub(r"\\\1", " ".join(t.replace("\0", " ").split())) + "\n").encode("utf-8") + b"\0"
            for t in texts
        )
        with self.lock:
            if self.process.poll() is not None:
                raise UserError(f"apertium {self.mode} stopped (exit {self.process.returncode})")
            writer = threading.Thread(target=self._write, args=(data,), daemon=True)
            writer.start()
            out, ended = bytearray(), 0
            while ended < len(texts):
                chunk = self.process.stdout.read1(1 << 16)
                if not chunk:
                    raise UserError(f"apertium {self.mode} closed its output")
                out += chunk
                ended += chunk.count(b"\0")
            writer.join()
        pieces = out.decode("utf-8", errors="replace").split("\0")[: len(texts)]
        return [" ".join(_MARKS.sub(" ", _ESCAPED.sub(r"\1", p)).split()) for p in pieces]

    def _write(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except OSError:
            pass  # the pipeline died: the reader sees its output close

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is None or process.poll() is not None:
            return
        process.stdin.close()  # the stages end on end of input
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _pivot_order(item: tuple[tuple[str, str], str]) -> tuple:
    """Routes of equal length pivot through Spanish, then English, first: most Apertium pairs, and the most
    mature ones, have one of them on a side."""
    (_, target), mode = item
    return ({"es": 0, "en": 1}.get(target, 2), item)


class ApertiumEngine:
    """The `apertium` command with the language pairs installed (apt-get install apertium-eng-spa ...)."""

    def __init__(self, command: str = "apertium"):
        self.command = shutil.which(command)
        if self.command is None:
            raise UserError(
                "the apertium backend needs Apertium: apt-get install apertium cg3 apertium-eng-spa "
                "apertium-fr-es apertium-spa-ita (one package per language pair)"
            )
        listed = subprocess.run([self.command, "-l"], capture_output=True, text=True, check=False).stdout.split()
        self.modes = {pair: mode for mode in listed if (pair := _mode_languages(mode))}
        self.pipes: dict[str, ApertiumPipe] = {}  # one long-lived pipeline per mode, started on first use
        self._routes: dict[tuple[str, str], list[str] | None] = {}
        self.lock = threading.Lock()

    def route(self, source: str, target: str) -> list[str] | None:
        """The shortest chain of modes from source to target (pivoting through other languages, Spanish and
        English first), or None; remembered, since translate-test asks it for every query."""
        if (source, target) not in self._routes:
            self._routes[source, target] = self._shortest_chain(source, target)
        return self._routes[source, target]

    def _shortest_chain(self, source: str, target: str) -> list[str] | None:
        previous: dict[str, tuple[str, str] | None] = {source: None}
        queue = deque([source])
        while queue:
            lang = queue.popleft()
            if lang == target:
                chain = []
                while previous[lang] is not None:
                    lang, mode = previous[lang]
                    chain.append(mode)
                return chain[::-1]
            for (a, b), mode in sorted(self.modes.items(), key=_pivot_order):
                if a == lang and b not in previous:
                    previous[b] = (lang, mode)
                    queue.append(b)
        return None

    def pipe(self, mode: str) -> ApertiumPipe:
        with self.lock:
            if mode not in self.pipes:
                self.pipes[mode] = ApertiumPipe(self.command, mode)
            return self.pipes[mode]

    def translate(self, texts: list[str], mode: str) -> list[str]:
        return self.pipe(mode).translate(texts) if texts else []

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.close()
        self.pipes.clear()


class TranslationGenerator:
    """One pseudo-query per passage and target language: its lead text, translated. Deterministic (no seed)."""

    whole_shard = True  # one call per mode and shard: the texts stream through the pipeline together

    def __init__(self, engine: ApertiumEngine | None = None, max_words: int = 32):
        self.engine = engine or ApertiumEngine()
        self.max_words = max_words
        self.identity = {"backend": "apertium", "modes": sorted(self.engine.modes.values()), "max_words": max_words}

    def generate(self, docs: list[Document], lang: str, num: int, seed: int) -> list[tuple[str, list[str]]]:
        results: list[tuple[str, list[str]]] = [("", [])] * len(docs)
        by_source: dict[str, list[int]] = {}
        for i, doc in enumerate(docs):
            if doc.lang and doc.lang != lang:  # a passage's own language needs no translation
                by_source.setdefault(doc.lang, []).append(i)
        for source, rows in by_source.items():
            chain = self.engine.route(source, lang)
            if not chain:
                continue
            texts = [lead_text(docs[i], self.max_words) for i in rows]
            for mode in chain:
                texts = self.engine.translate(texts, mode)
            label = "apertium:" + ">".join(chain)
            for i, text in zip(rows, texts, strict=True):
                results[i] = (label, [text] if text else [])
        return results


# --- backend 3: an LLM (xretrieve/llm.py) -------------------------------------------------------------------------


class LLMGenerator:
    """Queries an LLM writes for a passage in the target language; replies parsed and checked as in `synthesize`."""

    whole_shard = True  # a shard's prompts at once: an endpoint serves them `--concurrency` at a time

    def __init__(self, llm, max_query_words: int):
        from xretrieve.llm import XQG_PROMPT_VERSION

        self.llm, self.max_query_words = llm, max_query_words
        self.identity = {**llm.identity, "prompt": XQG_PROMPT_VERSION, "max_query_words": max_query_words}
        identity = llm.identity
        self.label = f"llm:{identity.get('model') or identity.get('name') or identity.get('url')}"
        self.dropped: Counter = Counter()

    def generate(self, docs: list[Document], lang: str, num: int, seed: int) -> list[tuple[str, list[str]]]:
        from xretrieve.llm import keep_queries, xqg_prompt

        prompts = [xqg_prompt(doc, lang) for doc in docs for _ in range(num)]
        replies = self.llm.complete(prompts, [_derived_seed(seed, j) for j in range(len(prompts))])
        return [
            (self.label, keep_queries(replies[i * num : (i + 1) * num], doc, self.max_query_words, self.dropped))
            for i, doc in enumerate(docs)
        ]

    def take_dropped(self) -> dict[str, int]:
        """Replies dropped since the last call, by reason (a shard's record keeps them)."""
        dropped, self.dropped = dict(self.dropped), Counter()
        return dropped


def make_generator(config: GenerateConfig):
    if config.backend == "apertium":
        return TranslationGenerator(max_words=config.max_words)
    if config.backend == "llm":
        from xretrieve.llm import make_llm

        check_languages(config.langs)
        return LLMGenerator(make_llm(config), config.max_query_words)
    return Seq2SeqGenerator(
        config.generator,
        device=config.device,
        top_k=config.top_k,
        max_new_tokens=config.max_new_tokens,
        max_input_tokens=config.max_input_tokens,
    )


# --- sharded, resumable generation -------------------------------------------------------------------------------


def parts_folder(out: str | Path) -> Path:
    """Where shards of a generation run wait until all are done: OUT.parts/ beside OUT."""
    return Path(f"{out}.parts")


def generate_queries(config: GenerateConfig, generator=None) -> Path:
    """Generate queries for every passage in every target language into one jsonl file.

    The corpus splits into shards of `shard_size` passages, each written atomically with a record, so a
    killed run redoes at most one shard per process; `--shard i/n` lets n processes share the work. The
    last process to finish joins the shards into OUT (and OUT.json, the run's provenance).
    """
    out = Path(config.out)
    docs = read_corpus(config.corpus)
    generator = generator or make_generator(config)
    num_shards = math.ceil(len(docs) / config.shard_size)
    plan = {
        "corpus_sha256": sha256_file(config.corpus),
        "generator": generator.identity,
        "langs": config.langs,
        "num_queries": config.num_queries,
        "seed": config.seed,
        "shard_size": config.shard_size,
        "batch_size": config.batch_size,
    }
    parts = parts_folder(out)
    if out.is_file() and provenance(out).get("plan") == plan:
        return out  # done before

    def build(j: int) -> dict:
        shard_docs = docs[j * config.shard_size : (j + 1) * config.shard_size]
        return _generate_shard(parts, j, shard_docs, generator, config, plan)

    records = run_shards(parts, plan, num_shards, config.shard, build, "generate-queries", config.progress)
    if records is None:
        return out  # other shards are still someone else's work
    join_shards(out, parts, num_shards)
    summary = {"plan": plan, "corpus": str(Path(config.corpus).resolve()), "passages": len(docs)}
    summary["queries"] = sum_counts(r["per_lang"] for r in records)
    dropped = sum_counts(r.get("dropped", {}) for r in records)
    atomic_write_json(f"{out}.json", summary | ({"dropped": dropped} if dropped else {}))
    shutil.rmtree(parts)
    return out


def run_shards(
    parts: Path,
    plan: dict,
    num_shards: int,
    shard: tuple[int, int] | None,
    build: Callable[[int], dict],
    desc: str,
    progress: bool,
) -> list[dict] | None:
    """Build this process's shards (j % n == i for --shard i/n) that have no finished record of `plan`;
    `build(j)` writes shard j's files into `parts` and returns its record, written last. Every shard's
    record once all are finished, else None (other processes still hold some)."""
    from tqdm import tqdm

    todo = [j for j in range(num_shards) if shard is None or j % shard[1] == shard[0]]
    known = {}
    with tqdm(total=len(todo), desc=desc, unit="shard", disable=not progress) as bar:
        for j in todo:
            known[j] = load_shard_record(parts, j, plan) or build(j)
            bar.update(1)
    return finished_records(parts, num_shards, plan, known)


def join_shards(out: str | Path, parts: Path, num_shards: int) -> None:
    """Concatenate the shards' jsonl files, in shard order, into `out` (atomically)."""
    with atomic_open(out, "wb") as f:
        for j in range(num_shards):
            with open(parts / f"{shard_name(j)}.jsonl", "rb") as part:
                shutil.copyfileobj(part, f)


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-key sums of the shards' counts (queries per language, drops per reason)."""
    total: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0) + value
    return total


def provenance(out: str | Path) -> dict:
    path = Path(f"{out}.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _generate_shard(
    parts: Path, index: int, docs: list[Document], generator, config: GenerateConfig, plan: dict
) -> dict:
    per_doc: list[list[GeneratedQuery]] = [[] for _ in docs]
    per_lang = dict.fromkeys(config.langs, 0)
    step = max(1, len(docs)) if getattr(generator, "whole_shard", False) else config.batch_size
    for lang_index, lang in enumerate(config.langs):
        for start in range(0, len(docs), step):
            batch = docs[start : start + step]
            seed = _derived_seed(config.seed, index, lang_index, start)
            for offset, (label, texts) in enumerate(generator.generate(batch, lang, config.num_queries, seed)):
                per_doc[start + offset] += [
                    GeneratedQuery(batch[offset].id, lang, t, label, config.seed) for t in texts
                ]
                per_lang[lang] += len(texts)
    name = f"{shard_name(index)}.jsonl"
    write_generated(parts / name, (q for queries in per_doc for q in queries))
    record = {"plan": plan, "rows": len(docs), "per_lang": per_lang, "files": checksums(parts, [name])}
    if hasattr(generator, "take_dropped"):  # backends that check what they made (the LLM's replies)
        record["dropped"] = generator.take_dropped()
    return write_shard_record(parts, index, record)


def init_t5(
    texts: list[str], out: str | Path, vocab_size: int = 8000, d_model: int = 256, layers: int = 4, seed: int = 0
) -> Path:
    """A randomly initialised T5 with a Unigram tokenizer learnt from `texts`, as a model folder.

    No multilingual seq2seq weights install offline here; this gives `train-generator` something to train
    from scratch (and the tests a tiny model). A pretrained mT5 or mBART folder is the better start.
    """
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    specials = ["<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    alphabet = len(set("".join(texts)) | {"▁"})  # Unigram keeps every character as a piece
    size = max(vocab_size, alphabet + len(specials) + 1)
    trainer = trainers.UnigramTrainer(vocab_size=size, special_tokens=specials, unk_token="<unk>")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    heads = max(1, d_model // 64)
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=4 * d_model,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    out = Path(out)
    T5ForConditionalGeneration(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


# --- fine-tuning a generator ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorPair:
    passage: Document
    query: str
    lang: str  # the query's language: the language the generator is asked for


def read_generator_pairs(config: TrainGeneratorConfig) -> list[GeneratorPair]:
    """(passage, query, query language) from Tevatron/xretrieve train.jsonl, SWIM-IR, or queries + qrels + corpus."""
    from xretrieve.adapters import iter_swim_ir, iter_training
    from xretrieve.formats import iter_corpus, read_qrels, read_queries

    pairs = []
    if config.train is not None:
        examples = iter_swim_ir(config.train) if config.layout == "swim-ir" else iter_training(config.train)
        for example in examples:
            lang = example.lang or config.default_lang
            if not lang:
                raise UserError(
                    f"{config.train}: query {example.query_id!r} has no language ('lang' or 'query_lang'): "
                    "pass --default-lang"
                )
            pairs += [GeneratorPair(p, example.query, lang) for p in example.positives]
    else:
        queries = {q.id: q for q in read_queries(config.queries)}
        qrels = read_qrels(config.qrels)
        wanted = {d for docs in qrels.values() for d, rel in docs.items() if rel > 0}
        passages = {d.id: d for d in iter_corpus(config.corpus) if d.id in wanted}
        for qid, docs in qrels.items():
            if qid not in queries:
                continue
            lang = queries[qid].lang or config.default_lang
            if not lang:
                raise UserError(f"{config.queries}: query {qid!r} has no 'lang': pass --default-lang")
            pairs += [
                GeneratorPair(passages[d], queries[qid].text, lang)
                for d, rel in docs.items()
                if rel > 0 and d in passages
            ]
    if not pairs:
        raise UserError("train-generator: no (passage, query) pairs in the training data")
    return pairs


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (state.json is written last), oldest first."""
    return sorted(p.parent for p in folder.glob("step-*/state.json"))


def _save_checkpoint(folder: Path, step: int, model, tokenizer, optimizer, plan: dict, keep: int) -> None:
    import torch
    from safetensors.torch import save_file

    final = folder / f"step-{step:08d}"
    staging = folder / f".step-{step:08d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    state = optimizer.state_dict()  # no pickle: tensors to safetensors, the rest to JSON
    tensors = {f"{i}.{k}": v.reshape(-1).contiguous() for i, s in state["state"].items() for k, v in s.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, staging / "optimizer.safetensors")
    shapes = {f"{i}.{k}": list(v.shape) for i, s in state["state"].items() for k, v in s.items()}
    atomic_write_json(
        staging / "state.json", {"step": step, "plan": plan, "param_groups": state["param_groups"], "shapes": shapes}
    )
    shutil.rmtree(final, ignore_errors=True)
    os.rename(staging, final)
    for old in _checkpoints(folder)[:-keep]:
        shutil.rmtree(old)


def _load_optimizer(checkpoint: Path, optimizer) -> None:
    import torch
    from safetensors.torch import load_file

    state = json.loads((checkpoint / "state.json").read_text())
    tensors = load_file(checkpoint / "optimizer.safetensors")
    per_param: dict[int, dict] = {}
    for key, shape in state["shapes"].items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = tensors[key].reshape(shape)
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def _batches(count: int, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[int, np.ndarray]]:
    """(step, row indices) from `start_step` on; epoch e shuffles with seed + e: a resumed run sees the same batches."""
    per_epoch = math.ceil(count / batch_size)
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(count)
        for b in range(offset, per_epoch):
            yield step, order[b * batch_size : (b + 1) * batch_size]
            step += 1


def train_generator(config: TrainGeneratorConfig) -> Path:
    """Fine-tune a seq2seq model to write a query in a given language for a passage (xQG's generator).

    Checkpoints (model, optimizer state and RNG state; safetensors and JSON, no pickle) go to
    OUT/checkpoints every `save_steps`; a rerun resumes from the latest and sees the same batches.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    pairs = read_generator_pairs(config)
    out = Path(config.out)
    source = config.model
    base_settings = Path(source) / GENERATOR_SETTINGS
    template = json.loads(base_settings.read_text())["template"] if base_settings.is_file() else DEFAULT_TEMPLATE
    per_epoch = math.ceil(len(pairs) / config.batch_size)
    total = config.max_steps or config.epochs * per_epoch
    data_files = [p for p in (config.train, config.queries, config.qrels, config.corpus) if p]
    plan = {
        "base": str(Path(source).resolve()) if os.path.isdir(source) else source,
        "data_sha256": [sha256_file(p) for p in data_files],
        "pairs": len(pairs),
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_steps,
        "max_input_tokens": config.max_input_tokens,
        "max_target_tokens": config.max_target_tokens,
        "seed": config.seed,
        "template": template,
    }
    ckpt_dir = out / "checkpoints"
    done = _checkpoints(ckpt_dir)
    resume = done[-1] if done else None
    if resume is not None:
        saved = json.loads((resume / "state.json").read_text())
        if saved["plan"] != plan:
            raise UserError(
                f"{resume}: a checkpoint of a different training run (other data or settings): choose a new --out"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(resume or source)
        model = AutoModelForSeq2SeqLM.from_pretrained(resume or source)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load seq2seq model {source!r}: {str(exc).splitlines()[0]}") from None
    device = config.device or "cpu"
    model.to(device).train()
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    start = 0
    if resume is not None:
        start = json.loads((resume / "state.json").read_text())["step"]
        _load_optimizer(resume, optimizer)

    def learning_rate(step: int) -> float:  # linear warm-up, then linear decay to 0: a function of the step only
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        return config.learning_rate * max(0.0, (total - step) / max(1, total - config.warmup_steps))

    loss_value = float("nan")
    with tqdm(total=total, initial=start, desc="train-generator", unit="step", disable=not config.progress) as bar:
        for step, rows in _batches(len(pairs), config.batch_size, config.seed, start):
            if step >= total:
                break
            batch = [pairs[i] for i in rows]
            inputs = tokenizer(
                [render_prompt(template, p.lang, p.passage) for p in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=config.max_input_tokens,
            ).to(device)
            labels = tokenizer(
                text_target=[p.query for p in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=config.max_target_tokens,
            )["input_ids"].to(device)
            labels[labels == tokenizer.pad_token_id] = -100  # padding is not a target
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step)
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if (step + 1) % config.save_steps == 0 or step + 1 == total:
                _save_checkpoint(ckpt_dir, step + 1, model, tokenizer, optimizer, plan, config.keep_checkpoints)
    _publish(out, _checkpoints(ckpt_dir)[-1], template, plan, total, loss_value)
    return out


def _publish(out: Path, checkpoint: Path, template: str, plan: dict, steps: int, loss: float) -> None:
    """Copy the final checkpoint's model into OUT; the settings file, written last, marks it complete."""
    for path in checkpoint.iterdir():
        if path.name not in ("optimizer.safetensors", "state.json"):
            with open(path, "rb") as src, atomic_open(out / path.name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    atomic_write_json(
        out / GENERATOR_SETTINGS,
        {
            "template": template,
            "base": plan["base"],
            "steps": steps,
            "pairs": plan["pairs"],
            "final_loss": None if math.isnan(loss) else loss,
        },
    )
