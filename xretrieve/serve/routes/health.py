"""GET /healthz (the process is up) and /readyz (the index has loaded)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as real types.
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()


@router.get("/healthz", summary="The process is up")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Model and index are loaded")
async def readyz(request: Request):
    state = request.app.state.xretrieve
    if state.engine is None:
        return JSONResponse(
            {"status": "loading" if not state.error else "failed", "error": state.error}, status_code=503
        )
    return {"status": "ready"}
