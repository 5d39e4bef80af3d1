"""Writes to the served index (`serve --writable`): POST /v1/documents (upsert a batch), DELETE
/v1/documents/{id}, POST /v1/admin/compact.

A write is answered 200 only once it is durable (logged and fsync'd, xretrieve/live.py) and visible: a search
that starts after the answer sees it, and no search sees part of a batch. Documents are encoded on the search
engine's worker thread in chunks of a quarter of a search batch's budgets (--max-encode-tokens,
--max-encode-batch), as background work: searches that wait go first (serve.batching.SEARCH_TURNS batches
between two chunks), so a search waits behind one small chunk of a write at most. With API keys
configured, the gate has checked the key already; without, only clients on loopback may write.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
import asyncio
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from xretrieve.config.serve import is_loopback
from xretrieve.errors import UserError
from xretrieve.formats import Document, document_of, passage_text
from xretrieve.serve.batching import split_chunks
from xretrieve.serve.errors import ApiError
from xretrieve.serve.gate import CLIENT
from xretrieve.serve.routes.search import is_unicode
from xretrieve.update import check_batch

router = APIRouter()
# write work is cut into chunks of 1/WRITE_SHARE of a search batch's token and text budgets: streaming writes
# cost a search at most that much wait (benchmarks/live_updates.py measured 4 against 1)
WRITE_SHARE = 4


class DocumentsRequest(BaseModel):
    documents: list[dict[str, Any]] = Field(
        description='documents to add or replace: {"id", "text", "title"?, "lang"?}'
    )


def writer_for(request: Request):
    """The served index's writer, once this client may write (403 / 429 otherwise)."""
    state = request.app.state.xretrieve
    state.current()  # 503 while loading
    if state.writer is None:
        raise ApiError(403, "this server is read-only: start it with --writable to add and delete documents")
    if not state.config.api_keys:
        host = request.client.host if request.client else ""
        if not is_loopback(host):
            raise ApiError(403, "writes without API keys are taken from loopback only: configure --api-key")
    wait = state.write_rate.wait(request.scope["state"][CLIENT]) if state.write_rate else 0.0
    if wait:
        retry = math.ceil(wait)
        raise ApiError(429, f"write rate limit: retry in {retry} s", {"retry-after": str(retry)})
    return state.writer


def checked_documents(rows: list[dict[str, Any]], config) -> list[Document]:
    """The request's documents, each checked as a corpus row and within the server's limits (422 otherwise)."""
    if not rows:
        raise ApiError(422, "'documents' is empty")
    if len(rows) > config.max_write_batch:
        raise ApiError(422, f"{len(rows)} documents in one request; the limit is {config.max_write_batch}")
    docs = []
    for i, row in enumerate(rows):
        where = f"documents[{i}]"
        try:
            doc = document_of(row, where)
        except UserError as exc:
            raise ApiError(422, str(exc)) from None
        if not all(is_unicode(value) for value in (doc.id, doc.text, doc.title, doc.lang)):
            raise ApiError(422, f"{where}: not valid Unicode (it holds a lone surrogate)")
        if len(doc.text) + len(doc.title) > config.max_document_chars:
            raise ApiError(422, f"{where}: longer than {config.max_document_chars} characters (title and text)")
        docs.append(doc)
    try:
        check_batch(docs)
    except UserError as exc:
        raise ApiError(422, str(exc)) from None
    return docs


async def durable(call, *args):
    """Run a logging write off the event loop; a disk that refuses it is a 507, and nothing was applied."""
    try:
        return await asyncio.to_thread(call, *args)
    except OSError as exc:
        raise ApiError(507, f"the write was not made: {exc.filename}: {exc.strerror or exc}") from None


@router.post("/v1/documents", summary="Add or replace documents (--writable); 200 once durable and searchable")
async def upsert(body: DocumentsRequest, request: Request):
    writer = writer_for(request)
    docs = checked_documents(body.documents, request.app.state.xretrieve.config)
    config, engine = request.app.state.xretrieve.config, request.app.state.xretrieve.current()
    # in small chunks (a quarter of a search batch's budgets): a search waits behind one of them at most
    lengths = await asyncio.to_thread(writer.searcher.encoder.token_lengths, [passage_text(d) for d in docs])
    budget = (max(1, config.max_encode_tokens // WRITE_SHARE), max(1, config.max_encode_batch // WRITE_SHARE))
    parts = [await engine.write(writer.vectors, docs[start:end]) for start, end, _ in split_chunks(lengths, *budget)]
    vectors = np.concatenate([vectors for vectors, _ in parts])
    augmented = [flag for part in parts for flag in part[1]]
    await durable(writer.commit, docs, vectors, augmented)
    return {"upserted": len(docs)}


@router.delete("/v1/documents/{doc_id}", summary="Delete a document (--writable); 200 once durable, 404 if unknown")
async def delete(doc_id: str, request: Request):
    writer = writer_for(request)
    deleted = await durable(writer.delete, [doc_id])
    if not deleted:
        raise ApiError(404, f"no document {doc_id!r}")
    return {"deleted": 1}


@router.post("/v1/admin/compact", summary="Fold the changes into a new generation of the index (--writable)")
async def compact(request: Request):
    writer_for(request)
    generation = await request.app.state.xretrieve.compact()
    return {"generation": generation, "compacted": generation is not None}
