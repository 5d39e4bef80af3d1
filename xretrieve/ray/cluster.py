"""Joining a Ray cluster, and getting results of tasks with a user's mistake raised as itself."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from xretrieve.errors import UserError

LOCAL = "local"  # `--ray` without an address: start a Ray instance on this machine
INSTALL_HINT = "--ray needs Ray, which the core install leaves out: pip install 'xretrieve[dist]' (in a checkout: "
INSTALL_HINT += "pip install -e '.[dist]')"


def import_ray():
    """The `ray` library, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """Ray, joined to the cluster at `address` or to a new local instance (`local`), as found afterwards:
    a connection made here is closed here, and a local instance started here is stopped with it."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    settings = {"include_dashboard": False} if address == LOCAL else {}
    try:
        ray.init(address=address, logging_level="warning", configure_logging=True, **settings)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--ray {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def result(ray, ref):
    """ray.get, with a user's mistake inside a task (a UserError) raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, UserError):
            raise exc.cause from None
        raise
