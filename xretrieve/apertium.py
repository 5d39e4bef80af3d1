"""Offline machine translation with Apertium (Debian packages): long-lived pipelines, one per mode, and routes
that pivot through other languages where no direct pair is installed.

Core, not part of `xqg/`: translate-test (`translate.py`) translates queries at search time with it, and the
query writers (`xqg/backends/apertium.py`, `xqg/synthesize.py`) translate passages with the same engine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.text import LANGUAGES

ISO3 = {iso3: code for code, (_, iso3) in LANGUAGES.items()}  # as some Apertium modes name languages


def _mode_languages(mode: str) -> tuple[str, str] | None:
    """'eng-spa' or 'es-fr' -> ('en', 'es'); None for variants ('spa-eng_US', 'eco-es-fr') and unknown codes."""
    parts = mode.split("-")
    if len(parts) != 2 or any("_" in p for p in parts):
        return None
    codes = tuple(p if p in LANGUAGES else ISO3.get(p) for p in parts)
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
