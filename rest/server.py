"""The HTTP server that Ryu's manager starts for its WSGI application, made quiet and safe.

Ryu's ``WSGIServer`` calls ``eventlet.wsgi.server`` with eventlet's defaults: an access-log
line formatted for every request (client address, a strftime date, the request line),
which costs about a tenth of a bond status GET even when the logger drops it, and, should
an exception escape the application, its traceback as the body of the 500 page.
:class:`QuietWSGIServer` serves the same application without either: an escaping
exception is logged here and answered with the API's JSON error. Requests are still
counted by route and status in ``/metrics``, and every change is logged by the app.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ryu_lag import eventlet_compat

eventlet_compat.apply()  # before Ryu's WSGI module is imported

import eventlet.wsgi  # noqa: E402
import ryu.app.wsgi  # noqa: E402
from ryu.cfg import CONF  # noqa: E402
from ryu.lib import hub  # noqa: E402

LOG = logging.getLogger("ryu_lag.rest")
INTERNAL_ERROR_MESSAGE = "internal error; the controller log has the details"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_INTERNAL_ERROR = (json.dumps({"error": {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE}}) + "\n").encode()


def guarded(app: WsgiApp) -> WsgiApp:
    """``app``, with an exception it raises logged and answered as a JSON 500."""

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except Exception:  # noqa: BLE001 - nothing may reach the client as a traceback
            LOG.exception("REST request %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(_INTERNAL_ERROR)))]
            # exc_info: the app may have started a response; PEP 3333 lets this one replace it.
            start_response("500 Internal Server Error", headers, sys.exc_info())
            return [_INTERNAL_ERROR]

    return guarded_app


class QuietWSGIServer(hub.WSGIServer):
    """Ryu's WSGI server (``ryu.app.wsgi.WSGIServer``) without eventlet's access log and traceback pages.

    Built on Ryu's hub server, not on ``ryu.app.wsgi.WSGIServer``: that one's ``__init__``
    finds its parent through the module name :func:`install` rebinds.
    """

    def __init__(self, application: WsgiApp, **config: Any) -> None:
        super().__init__((CONF.wsapi_host, CONF.wsapi_port), application, **config)

    def __call__(self) -> None:
        self.serve_forever()

    def serve_forever(self) -> None:
        """Serve the application until the process stops (what Ryu's manager runs)."""
        eventlet.wsgi.server(self.server, guarded(self.handle), log_output=False, debug=False)


def install() -> None:
    """Make Ryu's manager start :class:`QuietWSGIServer` (before it starts its WSGI server).

    Ryu's manager builds its server as ``ryu.app.wsgi.WSGIServer(application)`` after every
    app is made, so an app's ``__init__`` is early enough.
    """
    ryu.app.wsgi.WSGIServer = QuietWSGIServer  # type: ignore[misc]
