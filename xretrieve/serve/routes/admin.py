"""GET /v1/info (index, model, limits, counters) and POST /v1/admin/reload (swap in an index)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
from dataclasses import asdict

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from xretrieve.serve.errors import ApiError

router = APIRouter()
LIMIT_PREFIXES = ("max_", "timeout", "batch_", "rate_", "header_", "body_")


class ReloadRequest(BaseModel):
    index: str | None = Field(None, description="index folder to serve from now on (default: the same)")


@router.get("/v1/info", summary="Index, model, documents per language, limits")
async def info(request: Request):
    state = request.app.state.xretrieve
    current = state.current()
    manifest = current.searcher.manifest
    return {
        "index": {k: manifest.get(k) for k in ("factory", "metric", "dim", "rows", "search_params")},
        "model": current.searcher.encoder.identity,
        "langs": manifest.get("langs", {}),
        "shards": len(manifest.get("shards", [])),
        "has_texts": current.searcher.docs is not None,
        "translate": translate_info(current.searcher),
        "limits": {k: v for k, v in asdict(state.config).items() if k.startswith(LIMIT_PREFIXES)},
        "stats": dict(current.stats),
    }


@router.post("/v1/admin/reload", summary="Load an index (the same or another) and swap it in without downtime")
async def reload(body: ReloadRequest, request: Request):
    state = request.app.state.xretrieve
    if not state.config.api_keys:
        raise ApiError(403, "admin endpoints need the server to run with --api-key")
    folder, searcher = await state.reload(body.index)
    return {"index": folder, "rows": searcher.manifest.get("rows")}


def translate_info(searcher) -> dict | None:
    translate = getattr(searcher, "translate", None)
    if translate is None:
        return None
    return {"weight": translate.weight, "targets": translate.targets, "stats": dict(translate.stats)}
