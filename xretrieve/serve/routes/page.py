"""GET /: the search page, under a content security policy that lets only its own inline code run."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
import base64
import functools
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    html, headers = _page()
    return HTMLResponse(html, headers=headers)


@functools.cache
def _page() -> tuple[str, dict[str, str]]:
    html = (resources.files("xretrieve") / "static" / "search.html").read_text(encoding="utf-8")
    return html, page_headers(html)


def page_headers(html: str) -> dict[str, str]:
    """A CSP letting only the page's own inline script and style run, talking only to this server; no framing."""

    def allowed(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    policy = (
        f"default-src 'none'; script-src {allowed('script')}; style-src {allowed('style')}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
