"""Make Ryu 4.34 importable with modern eventlet, and its listeners exclusive.

``ryu.app.wsgi`` does ``from eventlet.wsgi import ALREADY_HANDLED`` at import time;
eventlet removed that name. :func:`apply` puts a sentinel back. It also makes
``eventlet.listen`` (which Ryu's OpenFlow and WSGI servers call through
``ryu.lib.hub.StreamServer``) leave ``SO_REUSEPORT`` off unless asked: eventlet sets it
by default, so a second controller on the same port would bind too and the kernel would
split switches and REST requests between the two; without it the second one fails with
EADDRINUSE. :func:`install_import_hook` does the same lazily, right after
``eventlet.wsgi`` is first imported, for entry points
that import Ryu before any ryu_lag code runs (plain ``ryu-manager``): the venv's
``ryu_lag_eventlet_compat.pth`` calls it at interpreter start, so importing this module
must stay cheap: only modules that every interpreter has already loaded.
"""

from __future__ import annotations

import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

TYPE_CHECKING = False  # typing itself is not cheap to import
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.abc import Loader
    from typing import Any

_WSGI_MODULE = "eventlet.wsgi"


def apply() -> None:
    """Import ``eventlet.wsgi``, provide ``ALREADY_HANDLED`` if missing, make ``eventlet.listen``
    exclusive (idempotent).

    Also silences eventlet's deprecation banner.
    """
    _silence_deprecation_warnings()
    import eventlet.wsgi

    _patch(eventlet.wsgi)


def install_import_hook() -> None:
    """Patch ``eventlet.wsgi`` as soon as something imports it (idempotent, imports nothing).

    If ``eventlet.wsgi`` is already imported, it is patched at once. Also silences
    eventlet's deprecation banner.
    """
    _silence_deprecation_warnings()
    module = sys.modules.get(_WSGI_MODULE)
    if module is not None:
        _patch(module)
        return
    if not any(isinstance(finder, _WsgiFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WsgiFinder())


def _patch(module: ModuleType) -> None:
    """Patch ``eventlet.wsgi`` and, imported before it, ``eventlet`` (and Ryu's hub if loaded)."""
    if not hasattr(module, "ALREADY_HANDLED"):
        setattr(module, "ALREADY_HANDLED", object())  # noqa: B010 - unknown to type checkers
    eventlet = sys.modules["eventlet"]
    if not getattr(eventlet.listen, _EXCLUSIVE, False):
        eventlet.listen = _exclusive_listen(eventlet.listen)
    hub = sys.modules.get("ryu.lib.hub")
    if hub is not None and hasattr(hub, "listen"):
        hub.listen = eventlet.listen


_EXCLUSIVE = "_ryu_lag_exclusive"


def _exclusive_listen(listen: Callable[..., Any]) -> Callable[..., Any]:
    """``eventlet.listen`` with ``reuse_port`` off by default (eventlet's default is on)."""
    import socket

    def exclusive_listen(
        addr: Any, family: int = socket.AF_INET, backlog: int = 50, reuse_addr: bool = True, reuse_port: bool = False
    ) -> Any:
        return listen(addr, family, backlog, reuse_addr, reuse_port)

    exclusive_listen.__doc__ = listen.__doc__
    setattr(exclusive_listen, _EXCLUSIVE, True)
    return exclusive_listen


def _silence_deprecation_warnings() -> None:
    # eventlet >= 0.37 prints a deprecation banner on import (an EventletDeprecationWarning,
    # matched by message so that eventlet need not be imported); Ryu needs eventlet anyway.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"eventlet(\..*)?$")


class _PatchingLoader:
    """Runs the real loader, then patches the module; delegates everything else."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)


class _WsgiFinder:
    """Finds ``eventlet.wsgi`` through the other finders and wraps its loader."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != _WSGI_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    # Duck-typed: subclassing importlib.abc.Loader would cost every start-up.
                    spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None
