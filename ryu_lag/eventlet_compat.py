"""Make Ryu 4.34 importable with modern eventlet.

``ryu.app.wsgi`` does ``from eventlet.wsgi import ALREADY_HANDLED`` at import time;
eventlet removed that name. :func:`apply` puts a sentinel back. :func:`install_import_hook`
does the same lazily, right after ``eventlet.wsgi`` is first imported, for entry points
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
    from collections.abc import Sequence
    from importlib.abc import Loader

_WSGI_MODULE = "eventlet.wsgi"


def apply() -> None:
    """Import ``eventlet.wsgi`` and provide ``ALREADY_HANDLED`` if missing (idempotent).

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
    if not hasattr(module, "ALREADY_HANDLED"):
        setattr(module, "ALREADY_HANDLED", object())  # noqa: B010 - unknown to type checkers


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
