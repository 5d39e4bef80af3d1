"""The search page in headless Chromium against a real server: the DOM it builds and a screenshot of it.

Needs a Chromium binary (Debian: `apt-get install chromium`); skipped without one, unless
XRETRIEVE_REQUIRE_CHROMIUM=1 (set in CI) turns the skip into a failure.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from conftest import write_corpus

from xretrieve.config import IndexConfig
from xretrieve.index import build_index
from xretrieve.model import BiEncoder
from xretrieve.search import Searcher
from xretrieve.server import ServerConfig, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("XRETRIEVE_REQUIRE_CHROMIUM") == "1":
    raise RuntimeError("XRETRIEVE_REQUIRE_CHROMIUM=1 but no chromium or chromium-browser on PATH")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")

# As the Debian machines need: no sandbox as root, and no background traffic to Google's hosts.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
BADGE = (0xE8, 0xEE, 0xFC)  # .lang background in search.html
# Markup in a document must show as text: the page builds hits with textContent only.
HOSTILE = {
    "id": "hostile",
    "title": "<b>bold</b>",
    "text": "fox <img src=x onerror=\"document.title='pwned'\"> & <script>document.title='pwned'</script>",
    "lang": "zz",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL once it is ready."""
    import httpx
    import uvicorn

    encoder = BiEncoder(str(tiny_model))
    folder = tmp_path_factory.mktemp("page")
    corpus = write_corpus(folder / "corpus.jsonl", 30)  # en, es, de, fi, ja in turn
    with open(corpus, "a", encoding="utf-8") as f:
        f.write(json.dumps(HOSTILE) + "\n")
    index = build_index(
        IndexConfig(out=str(folder / "idx"), corpus=str(corpus), num_shards=2, progress=False), encoder=encoder
    )
    app = create_app(ServerConfig(index=str(index)), load_searcher=lambda: Searcher(index, encoder=encoder))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the index never became ready"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def api_hits(base: str, query: str, langs: list[str] | None) -> list[dict]:
    """What the page should show: the API's answer to the body the page sends."""
    import httpx

    body = {"query": query, "k": 10} | ({"lang": langs} if langs else {})
    response = httpx.post(f"{base}/v1/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def run_chromium(*args: str, timeout: float = 60) -> str:
    """Run headless Chromium in a new empty profile; kill its whole process group however it ends."""
    with tempfile.TemporaryDirectory(prefix="xretrieve-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so the renderer and zygote go with it
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"chromium took longer than {timeout} s: {' '.join(args)}")
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert process.returncode == 0, f"chromium exited with {process.returncode}: {err[-2000:]}"
        return out


def page_url(base: str, query: str, langs: list[str] | None) -> str:
    return f"{base}/?" + urlencode({"q": query} | ({"lang": ",".join(langs)} if langs else {}))


class HitsParser(HTMLParser):
    """The <li> items of <ol id="hits">: data-id and the text of its .lang, .text and .meta children."""

    def __init__(self):
        super().__init__()
        self.hits: list[dict] = []
        self.tags_in_hits: list[str] = []
        self.status = ""
        self.title = ""
        self._in_hits = False
        self._field: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "ol" and attrs.get("id") == "hits":
            self._in_hits = True
        elif self._in_hits:
            self.tags_in_hits.append(tag)
            if tag == "li":
                self.hits.append({"id": attrs.get("data-id"), "lang": "", "text": "", "meta": ""})
            elif attrs.get("class") in ("lang", "text", "meta"):
                self._field = attrs["class"]
        elif attrs.get("id") == "status":
            self._field = "status"
        elif tag == "title":
            self._field = "title"

    def handle_endtag(self, tag):
        if tag == "ol" and self._in_hits:
            self._in_hits = False
        elif tag in ("span", "div", "title"):
            self._field = None

    def handle_data(self, data):
        if self._field == "status":
            self.status += data
        elif self._field == "title":
            self.title += data
        elif self._field and self.hits:
            self.hits[-1][self._field] += data


def dump_hits(base: str, query: str, langs: list[str] | None) -> HitsParser:
    parser = HitsParser()
    parser.feed(run_chromium("--dump-dom", page_url(base, query, langs)))
    return parser


@pytest.mark.parametrize(
    ("query", "langs"),
    [("the quick brown fox", None), ("der hund la nuit", ["de", "fi"])],
)
def test_page_shows_the_hits_the_api_returns(server, query, langs):
    expected = api_hits(server, query, langs)
    page = dump_hits(server, query, langs)
    assert page.status.startswith(f"{len(expected)} hits in "), page.status
    assert [h["id"] for h in page.hits] == [h["id"] for h in expected]
    assert [h["lang"] for h in page.hits] == [h["lang"] for h in expected]
    assert [h["text"] for h in page.hits] == [h["text"] for h in expected]
    assert [h["meta"] for h in page.hits] == [f"score {h['score']:.3f} · {h['id']}" for h in expected]
    shown = {h["lang"] for h in page.hits}
    if langs:
        assert shown <= set(langs), shown
    else:
        assert len(shown) >= 2, f"hits in one language only: {shown}"


def test_page_shows_markup_in_documents_as_text(server):
    page = dump_hits(server, "fox", ["zz"])
    assert page.hits == [
        {
            "id": "hostile",
            "lang": "zz",
            "text": f"{HOSTILE['title']} — {HOSTILE['text']}",
            "meta": page.hits[0]["meta"],
        }
    ]
    assert page.tags_in_hits == ["li", "span", "span", "div"]  # no <b>, <img> or <script> from the document
    assert page.title == "xretrieve search"


def test_page_shows_an_api_error(server):
    page = dump_hits(server, "fox", ["xx"])
    assert page.hits == []
    assert "no documents in xx" in page.status


def read_png(path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit RGB or RGBA PNG (what Chromium writes), with the stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG: {header}"
    bpp = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * bpp, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    if bpp == 4:  # drop alpha: the page is opaque
        rows = [bytes(b for i, b in enumerate(row) if i % 4 != 3) for row in rows]
    return width, height, rows


def test_screenshot_of_the_page(server, tmp_path):
    shot = tmp_path / "search.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1000,700", page_url(server, "the quick brown fox", None))
    assert shot.is_file(), "chromium wrote no screenshot"
    width, height, rows = read_png(shot)
    assert (width, height) == (1000, 700)
    pixels = [row[i : i + 3] for row in rows for i in range(0, len(row), 3)]
    colours = set(pixels)
    assert len(colours) > 20, f"a blank page: {len(colours)} colours"
    white = pixels.count(b"\xff\xff\xff")
    assert 0.5 < white / len(pixels) < 0.99, f"{white / len(pixels):.0%} white"
    badge = bytes(BADGE)
    assert pixels.count(badge) > 1000, "no language badges (#e8eefc) in the screenshot"
    # One horizontal band of badge colour per hit on screen (ten hits; the last may fall below the fold).
    badge_rows = [any(row[i : i + 3] == badge for i in range(0, len(row), 3)) for row in rows]
    bands = sum(1 for y in range(height) if badge_rows[y] and (y == 0 or not badge_rows[y - 1]))
    assert 8 <= bands <= 10, f"{bands} bands of badges"
