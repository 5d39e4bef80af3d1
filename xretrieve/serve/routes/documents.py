"""GET /v1/documents/{id}: a document of the index being served."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
from fastapi import APIRouter, Request

from xretrieve.errors import UserError
from xretrieve.serve.errors import ApiError

router = APIRouter()


@router.get("/v1/documents/{doc_id}", summary="One document by id")
async def document(doc_id: str, request: Request):
    searcher = request.app.state.xretrieve.current().searcher
    if searcher.docs is None:
        raise ApiError(404, "this index holds ids only (its corpus was missing when it was built)")
    doc = document_of(searcher, doc_id)
    if doc is None:
        raise ApiError(404, f"no document {doc_id!r}")
    return doc


def document_of(searcher, docid: str) -> dict | None:
    try:
        return searcher.document(docid)
    except UserError as exc:  # a damaged store row: this request fails, clearly, the server goes on
        raise ApiError(500, f"document {docid!r} cannot be read: {exc}") from None
