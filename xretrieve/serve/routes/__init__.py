"""The HTTP routes: one module per group, each an `APIRouter` of module-level handlers that read the app's
state (`serve.loading.ServeState`) from `request.app.state.xretrieve`. A new group of routes is a module
with its own `router`, listed in `routers`."""

from __future__ import annotations


def routers(config) -> list:
    """The routers `create_app` includes for `config`, in the order the API documents them; a group that only
    some servers offer (say, document writes behind a `--writable` flag) is appended here when its flag is on."""
    from xretrieve.serve.routes import admin, documents, health, page, search

    return [search.router, documents.router, admin.router, health.router, page.router]
