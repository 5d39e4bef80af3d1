"""LLM backends for `synthesize` and `generate-queries --backend llm`, behind one call:
`complete(prompts, seeds) -> [reply, or None where the request failed]`.

- `OpenAIChat`: any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, llama.cpp's server, Ollama, TGI),
  standard library only: a thread pool, timeouts, retries with exponential backoff on 429, 5xx and timeouts.
- `LocalCausalLM`: a Hugging Face causal LM folder, run with transformers in left-padded batches.

Also the prompts, with few-shot exemplars written for this project, and the one parser of a reply: the query
is the text after the last line that begins with `Query` (`Query:` or `Query (Swahili):`), dropped by reason
when it is missing, empty, too long or copied from the passage.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.text import language_name, shingles

log = logging.getLogger(__name__)

# recorded in each run's plan: a changed prompt makes older shards another run's work
SAP_PROMPT_VERSION = "sap-1"
XQG_PROMPT_VERSION = "xqg-1"
PASSAGE_WORDS = 300  # longer passages are cut: SWIM-IR's passages are about 100 words; tokens cost time
COPY_OVERLAP = 0.8  # share of a query's character 3-grams found in the passage at which it counts as copied
DROP_REASONS = ("request_failed", "no_query", "empty_query", "too_long", "copied", "duplicate")

# (title, passage, English summary, query language, query): written for this project
EXEMPLARS = (
    (
        "Waggle dance",
        "A forager honeybee that finds a rich patch of flowers returns to the hive and dances on the comb. "
        "The angle of the straight run against the vertical tells the other workers the direction of the "
        "food relative to the sun, and the length of the run tells them how far away it is.",
        "Honeybees tell each other where food is with a dance whose angle gives the direction and whose "
        "length gives the distance.",
        "es",
        "¿cómo indican las abejas la distancia hasta las flores?",
    ),
    (
        "Suez Canal",
        "The Suez Canal crosses Egypt to join the Mediterranean Sea with the Red Sea. It opened in 1869 after "
        "ten years of digging, and ships between Europe and Asia no longer had to sail around Africa.",
        "The Suez Canal in Egypt, opened in 1869, links the Mediterranean and the Red Sea and shortens the "
        "voyage between Europe and Asia.",
        "de",
        "wann wurde der Suezkanal eröffnet",
    ),
    (
        "Cassava",
        "Cassava is a woody shrub grown throughout the tropics for its starchy roots. The raw roots hold "
        "compounds that release cyanide, so they are soaked, fermented or cooked before they are eaten.",
        "Cassava is a tropical root crop that has to be soaked, fermented or cooked to get rid of compounds "
        "that release cyanide.",
        "id",
        "mengapa singkong harus dimasak sebelum dimakan",
    ),
)

_SAP_TASK = (
    "For each passage, first write a one-sentence summary of it in English, then one search query in the "
    "requested language that the passage answers: a short, natural question a person would type, not a "
    "sentence copied from the passage."
)
_XQG_TASK = (
    "For each passage, write one search query in the requested language that the passage answers: a short, "
    "natural question a person would type, not a sentence copied from the passage."
)


def _passage_block(title: str, text: str, lang: str) -> str:
    words = text.split()
    passage = " ".join(words[:PASSAGE_WORDS])
    return f"Passage: {f'{title}: ' if title else ''}{passage}\nQuery language: {language_name(lang)}\n"


def sap_prompt(doc: Document, lang: str) -> str:
    """Summarize-then-ask (SWIM-IR): the model continues with a summary, then `Query (Language): ...`."""
    shots = "".join(
        f"{_passage_block(title, text, code)}Summary: {summary}\nQuery ({language_name(code)}): {query}\n\n"
        for title, text, summary, code, query in EXEMPLARS
    )
    return f"{_SAP_TASK}\n\n{shots}{_passage_block(doc.title, doc.text, lang)}Summary:"


def xqg_prompt(doc: Document, lang: str) -> str:
    """A query in the target language for the passage (xQG's generator), answered as `Query (Language): ...`."""
    shots = "".join(
        f"{_passage_block(title, text, code)}Query ({language_name(code)}): {query}\n\n"
        for title, text, _, code, query in EXEMPLARS
    )
    return f"{_XQG_TASK}\n\n{shots}{_passage_block(doc.title, doc.text, lang)}"


# `Query:` or `Query (Swahili):`, also in markdown bold; not `Query language:`
_QUERY_LINE = re.compile(r"^[\s>#-]*Query\s*(?:\([^)\n]*\))?\s*:(.*)$", re.IGNORECASE)
_QUOTES = "\"'“”‘’«»„`"


def parse_query(reply: str) -> str | None:
    """The text after the last line that begins with `Query`; None when no line does."""
    found = None
    for line in reply.splitlines():
        match = _QUERY_LINE.match(line.replace("*", ""))
        if match:
            found = match.group(1)
    return None if found is None else " ".join(found.split()).strip(_QUOTES).strip()


def _normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def check_reply(reply: str | None, doc: Document, max_words: int) -> tuple[str | None, str | None]:
    """(query, None) for a usable reply, else (None, the reason it is dropped)."""
    if reply is None:
        return None, "request_failed"
    query = parse_query(reply)
    if query is None:
        return None, "no_query"
    if not query:
        return None, "empty_query"
    if len(query.split()) > max_words:
        return None, "too_long"
    passage = f"{doc.title} {doc.text}"
    grams = shingles(query)
    copied = len(grams & shingles(passage)) / len(grams) >= COPY_OVERLAP
    if copied or _normalized(query).strip("?.!¿¡ ") in _normalized(passage):
        return None, "copied"
    return query, None


def keep_queries(replies: list[str | None], doc: Document, max_words: int, dropped: Counter) -> list[str]:
    """The usable queries among one passage's replies for one language, repeats dropped; drops counted by reason."""
    kept: list[str] = []
    for reply in replies:
        query, reason = check_reply(reply, doc, max_words)
        if query is not None and _normalized(query) in {_normalized(k) for k in kept}:
            query, reason = None, "duplicate"
        if query is None:
            dropped[reason] += 1
        else:
            kept.append(query)
    return kept


# --- backend 1: an OpenAI-compatible endpoint ---------------------------------------------------------------------


def chat_url(url: str) -> str:
    """http://host:8000, .../v1 or the full .../v1/chat/completions -> the chat completions URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint, `concurrency` requests in flight.

    A 429, a 5xx, a timeout or a lost connection is retried `retries` times, waiting as Retry-After says or
    else `backoff` * 2^attempt seconds; then the prompt's reply is None (dropped and counted). Any other 4xx
    (a wrong key, model or URL) stops the run: retrying cannot mend it.
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 5,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        backoff: float = 1.0,
        max_wait: float = 300.0,
    ):
        self.url = chat_url(url)
        self.model, self.concurrency, self.timeout, self.retries = model, concurrency, timeout, retries
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.backoff, self.max_wait = backoff, max_wait
        self.api_key = os.environ.get("XRETRIEVE_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.identity = {  # no key here: the identity goes into files
            "backend": "openai-chat",
            "url": self.url,
            "model": model,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
        }

    def complete(self, prompts: list[str], seeds: list[int]) -> list[str | None]:
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        stop = threading.Event()  # set after an error or Ctrl-C: requests waiting to retry give up at once
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(self._request, p, s, stop) for p, s in zip(prompts, seeds, strict=True)]
            wait(futures, return_when=FIRST_EXCEPTION)  # a 4xx stops the run now, not after the others' retries
            error = next((f.exception() for f in futures if f.done() and f.exception()), None)
            if error is not None:
                raise error
            results = [f.result() for f in futures]
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)  # requests not yet sent never are
        failures = [r for r in results if isinstance(r, _Failure)]
        if results and len(failures) == len(results):
            # nothing came back: the endpoint is down, not the replies bad; stop, and a rerun redoes this work
            raise UserError(f"--llm {self.url}: every request failed after {self.retries} retries: {failures[-1]}")
        for failure in failures:
            log.warning("--llm %s: request failed after %d retries: %s", self.url, self.retries, failure)
        return [None if isinstance(r, _Failure) else r for r in results]

    def _body(self, prompt: str, seed: int) -> bytes:
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": seed,  # servers that support it (OpenAI, vLLM) sample reproducibly
        }
        return json.dumps(body | ({"model": self.model} if self.model else {})).encode()

    def _request(self, prompt: str, seed: int, stop: threading.Event) -> str | _Failure:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=self._body(prompt, seed), headers=headers, method="POST")
        for attempt in range(self.retries + 1):
            pause = self.backoff * 2**attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _reply_text(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    detail = " ".join(exc.read()[:300].decode("utf-8", "replace").split())
                    raise UserError(f"--llm {self.url}: HTTP {exc.code} {exc.reason}: {detail}") from None
                failure = _Failure(f"HTTP {exc.code} {exc.reason}")
                asked = _retry_after(exc.headers.get("Retry-After"))
                pause = pause if asked is None else asked
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                failure = _Failure(str(getattr(exc, "reason", exc)) or type(exc).__name__)
            except _MalformedReply as exc:
                return _Failure(str(exc))  # a server that answers 200 with nonsense will do so again
            if attempt < self.retries and stop.wait(min(pause, self.max_wait)):
                break
        return failure


class _Failure(str):
    """A request that failed for good, with why (a str, so the last one can be quoted)."""


class _MalformedReply(Exception):
    pass


def _reply_text(payload: bytes) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _MalformedReply(f"not a chat completion: {payload[:100]!r}") from None
    if not isinstance(content, str):
        raise _MalformedReply(f"message content is {type(content).__name__}, not text")
    return content


# --- backend 2: a local causal LM ---------------------------------------------------------------------------------


class LocalCausalLM:
    """A Hugging Face causal LM folder, in left-padded batches, greedy at temperature 0, else sampled with the
    batch's seed. The prompt goes through the tokenizer's chat template when it has one."""

    def __init__(
        self,
        folder: str,
        device: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        max_input_tokens: int = 2048,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        from xretrieve.model import folder_fingerprint

        transformers_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForCausalLM.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise UserError(f"--llm {folder}: not a causal LM folder: {str(exc).splitlines()[0]}") from None
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        self.tokenizer.truncation_side = "left"  # an over-long prompt loses exemplars, not its passage
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device or "cpu"
        self.model.to(self.device).eval()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.batch_size, self.max_new_tokens, self.temperature = batch_size, max_new_tokens, temperature
        self.max_input_tokens = max_input_tokens
        self.identity = {
            "backend": "causal-lm",
            "name": str(Path(folder).resolve()),
            "fingerprint": folder_fingerprint(folder),
            "chat_template": self.chat,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
        }

    def _render(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def complete(self, prompts: list[str], seeds: list[int]) -> list[str | None]:
        import torch

        sampling = (
            {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        )
        replies: list[str | None] = []
        for start in range(0, len(prompts), self.batch_size):
            inputs = self.tokenizer(
                [self._render(p) for p in prompts[start : start + self.batch_size]],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_input_tokens,
                add_special_tokens=not self.chat,  # a chat template writes its own special tokens
            ).to(self.device)
            torch.manual_seed(seeds[start])  # sampling repeats exactly on the same hardware
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **sampling,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            replies += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return replies


def make_llm(config):
    """The backend `--llm` names: an http(s) URL is an endpoint, an existing folder a local causal LM.
    `config` is a GenerateConfig or SynthesizeConfig (both carry the LLM settings under the same names)."""
    spec = config.llm
    if spec.startswith(("http://", "https://")):
        return OpenAIChat(
            spec,
            config.llm_model,
            concurrency=config.concurrency,
            timeout=config.timeout,
            retries=config.retries,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
        )
    if not Path(spec).is_dir():
        raise UserError(f"--llm {spec}: neither an http(s) URL nor an existing folder (a causal LM)")
    return LocalCausalLM(
        spec,
        device=config.device,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
    )
