"""POST /v1/search: one query or a batch, through the fair scheduler (`serve.batching.SearchEngine`)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
import asyncio

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from xretrieve.config.serve import ServerConfig
from xretrieve.errors import UserError
from xretrieve.serve.batching import Overloaded
from xretrieve.serve.errors import ApiError
from xretrieve.serve.gate import CLIENT
from xretrieve.serve.routes.documents import document_of

DOC_FIELDS = ("title", "text", "lang")
router = APIRouter()


class SearchRequest(BaseModel):
    query: str | None = Field(None, description="one query; or give `queries`")
    queries: list[str] | None = Field(None, description="a batch of queries")
    k: int = Field(10, strict=True, description="hits per query, from 1 to the server's max_k (an integer)")
    lang: list[str] | None = Field(None, description="only documents in these languages")
    query_lang: str | None = Field(
        None, description="the queries' language, for translate-test (guessed when absent)", max_length=16
    )
    fields: list[str] = Field(list(DOC_FIELDS), description="document fields to return: title, text, lang")


class Hit(BaseModel):
    id: str
    score: float
    rank: int
    lang: str | None = None
    title: str | None = None
    text: str | None = None


class Hits(BaseModel):
    hits: list[Hit]


class BatchResults(BaseModel):
    results: list[Hits]


@router.post(
    "/v1/search",
    response_model=Hits | BatchResults,
    response_model_exclude_none=True,
    summary="Search one query or a batch",
)
async def search(body: SearchRequest, request: Request):
    state = request.app.state.xretrieve
    texts = check(body, state.config)
    current = state.current()
    searcher, results = await answer(
        request,
        current.search(texts, body.k, body.lang, request.scope["state"][CLIENT], body.query_lang or None),
        state.config.timeout_s,
    )
    if isinstance(results, UserError):
        raise ApiError(422, str(results))
    payload = [{"hits": [hit_json(searcher, h, r, body.fields) for r, h in enumerate(hits, 1)]} for hits in results]
    return payload[0] if body.query is not None else {"results": payload}


def check(body: SearchRequest, config: ServerConfig) -> list[str]:
    """The request's queries, each within the server's limits; a 422 naming the first problem."""
    if (body.query is None) == (body.queries is None):
        raise ApiError(422, "give exactly one of 'query' or 'queries'")
    texts = [body.query] if body.query is not None else body.queries
    if not texts:
        raise ApiError(422, "'queries' is empty")
    if len(texts) > config.max_batch:
        raise ApiError(422, f"{len(texts)} queries in one request; the limit is {config.max_batch}")
    for i, text in enumerate(texts):
        if not is_unicode(text):
            raise ApiError(422, f"query {i} is not valid Unicode (it holds a lone surrogate)")
        if not text.strip():
            raise ApiError(422, f"query {i} is empty")
        if len(text) > config.max_query_chars:
            raise ApiError(422, f"query {i} has {len(text)} characters; the limit is {config.max_query_chars}")
    if not 1 <= body.k <= config.max_k:
        raise ApiError(422, f"k must be between 1 and {config.max_k}")
    if not all(is_unicode(lang) for lang in body.lang or ()):
        raise ApiError(422, "lang is not valid Unicode (it holds a lone surrogate)")
    unknown = sorted(set(body.fields) - set(DOC_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown fields {unknown}; choose from {list(DOC_FIELDS)}")
    return texts


def is_unicode(text: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot encode (lone surrogates like "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def hit_json(searcher, hit, rank: int, fields: list[str]) -> dict:
    out = {"id": hit.docid, "score": hit.score, "rank": rank}
    if "lang" in fields:
        out["lang"] = hit.lang
    if {"title", "text"} & set(fields):
        doc = document_of(searcher, hit.docid) or {}
        for name in ("title", "text"):
            if name in fields:
                out[name] = doc.get(name)
    return out


async def answer(request: Request, work, timeout_s: float):
    """`work`'s result; its work is dropped when the client leaves (499) or the timeout passes (504)."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_client_gone(request.receive))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        task.cancel()  # no-op when it finished; else its queued chunks are dropped
    if task in done:
        try:
            return task.result()
        except Overloaded as exc:
            raise ApiError(exc.status, str(exc), {"retry-after": str(exc.retry_after)}) from None
    if gone in done:
        raise ApiError(499, "the client closed the connection")
    raise ApiError(504, f"search took longer than {timeout_s} s", {"retry-after": "1"})


async def _client_gone(receive) -> None:
    """Returns when the client disconnects (the body was read already, so the next message is that)."""
    while (await receive())["type"] != "http.disconnect":
        pass
