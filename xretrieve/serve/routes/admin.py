"""GET /v1/info (index, model, limits, counters) and POST /v1/admin/reload (swap in an index)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
from dataclasses import asdict

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from xretrieve.serve.errors import ApiError

router = APIRouter()
LIMIT_PREFIXES = ("max_", "timeout", "batch_", "rate_", "header_", "body_", "write_")


class ReloadRequest(BaseModel):
    index: str | None = Field(None, description="index folder to serve from now on (default: the same)")


@router.get("/v1/info", summary="Index, model, documents per language, limits")
async def info(request: Request):
    state = request.app.state.xretrieve
    current = state.current()
    searcher = current.searcher
    manifest = searcher.manifest
    return {
        "index": {k: manifest.get(k) for k in ("factory", "metric", "dim", "search_params")} | {"rows": searcher.rows},
        "model": searcher.encoder.identity,
        "langs": searcher.langs,
        "live": live_info(state),
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


def live_info(state) -> dict:
    """The index's generation and the changes not yet compacted (what `compact --info` prints), and whether
    this server takes writes."""
    from xretrieve.update import is_augmented

    searcher = state.current().searcher
    return {
        "writable": state.writer is not None,
        "generation": searcher.generation,
        "pending": searcher.changes.summary(is_augmented(searcher.manifest)),
        "compacting": state.writer is not None and state.reloading.locked(),
    }
