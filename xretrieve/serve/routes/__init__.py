"""The HTTP routes: one module per group, each an `APIRouter` of module-level handlers that read the app's
state (`serve.loading.ServeState`) from `request.app.state.xretrieve`. A new group of routes is a module
with its own `router`, listed in `routers`."""

from __future__ import annotations


def routers(config) -> list:
    """The routers `create_app` includes for `config`, in the order the API documents them. The writes are
    routed on every server: a read-only one answers them 403, saying to start it with --writable."""
    from xretrieve.serve.routes import admin, documents, health, page, search, writes

    return [search.router, documents.router, writes.router, admin.router, health.router, page.router]
