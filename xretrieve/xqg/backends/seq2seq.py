"""Sampled queries from a Hugging Face seq2seq model (mT5, mBART, T5), with top-k as in xQG (Zhuang et al., SIGIR
2023): input "Generate a {language} question for this passage: {title} {passage}"."""

from __future__ import annotations

import os
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.xqg.template import render_prompt, saved_template


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
        self.template = saved_template(name_or_path)
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
