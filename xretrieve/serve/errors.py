"""Every error the API answers is JSON `{"error": ...}`: `ApiError` for the routes' own, and handlers that
give validation errors, HTTP errors and unexpected exceptions the same shape."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

log = logging.getLogger("xretrieve.server")


class ApiError(Exception):
    """An answer other than 200, raised by a route: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


async def api_error(request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def invalid(request, exc) -> JSONResponse:
    details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()]
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details) or "invalid request"
    return JSONResponse({"error": summary, "details": details}, status_code=422)


async def http_error(request, exc) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def internal(request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s", request.url.path)
    return JSONResponse({"error": "internal error"}, status_code=500)


def add_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)
