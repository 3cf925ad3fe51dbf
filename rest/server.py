"""The HTTP server that Ryu's manager starts for its WSGI application, made quiet and safe.

Ryu's ``WSGIServer`` calls ``eventlet.wsgi.server`` with eventlet's defaults: an access-log
line formatted for every request (client address, a strftime date, the request line),
which costs about a tenth of a bond status GET even when the logger drops it, and, should
an exception escape the application, its traceback as the body of the 500 page.
:class:`QuietWSGIServer` serves the same application without either: an escaping
exception is logged here and answered with the API's JSON error. Requests are still
counted by route and status in ``/metrics``, and every change is logged by the app.

It also bounds what one client can take (:class:`Limits`; the defaults below):

- a request's line and headers must arrive within ``HEAD_SECONDS`` of the server starting
  to wait for them (an idle keep-alive connection too), its body within ``BODY_SECONDS``
  of the head: else a JSON 408 and the connection is closed. The body, at most
  ``MAX_BODY`` bytes, is read before the application runs, so the application never waits
  on a client, and a chunked body reaches it like any other (with its length);
- one socket read or write that makes no progress for ``STALL_SECONDS`` closes the
  connection (a client that does not read its answers);
- at most ``MAX_CONNECTIONS`` connections are open, ``MAX_CONNECTIONS_PER_CLIENT`` from one
  address: one more is answered at once with a JSON 503 and closed, never queued.
  eventlet's own server would instead stop accepting while its pool is full, so that 1,024
  slow clients locked everyone out;
- what the server refuses before the application runs (request line or headers too long,
  a bad ``Content-Length``, an unsupported ``Transfer-Encoding``, a body over
  ``MAX_BODY``) is answered with the API's JSON error body, not eventlet's empty one.
"""

from __future__ import annotations

import collections
import functools
import http
import io
import json
import logging
import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ryu_lag import eventlet_compat

eventlet_compat.apply()  # before Ryu's WSGI module is imported

import eventlet  # noqa: E402
import eventlet.wsgi  # noqa: E402
import ryu.app.wsgi  # noqa: E402
from eventlet import support  # noqa: E402
from ryu.cfg import CONF  # noqa: E402
from ryu.lib import hub  # noqa: E402

LOG = logging.getLogger("ryu_lag.rest")
INTERNAL_ERROR_MESSAGE = "internal error; the controller log has the details"

HEAD_SECONDS = 10.0  # request line and headers, counted from when the server starts waiting
BODY_SECONDS = 10.0  # the whole body, counted from the end of the head
STALL_SECONDS = 10.0  # one socket read or write without progress
MAX_BODY = 64 * 1024  # bytes of request body
MAX_CONNECTIONS = 512  # open at once, from all clients
MAX_CONNECTIONS_PER_CLIENT = 64  # open at once from one client address
# File descriptors the process needs beside its REST connections: switches, the state
# database, logs, a refused connection while it is answered.
FD_RESERVE = 256
REFUSAL_LOG_SECONDS = 10.0  # at most one warning this often about refused connections

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The API's error codes for what the server refuses before the application runs.
ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    503: "too_many_connections",
    505: "http_version_not_supported",
}


def error_body(code: str, message: str) -> bytes:
    """The API's JSON error document."""
    return (json.dumps({"error": {"code": code, "message": message}}) + "\n").encode()


def error_response(status: int, message: str, *, body: bool = True) -> bytes:
    """A complete HTTP/1.1 response: ``status`` with the API's JSON error; the connection closes."""
    phrase = http.HTTPStatus(status).phrase
    document = error_body(ERROR_CODES[status], message)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(document)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + (document if body else b"")


_INTERNAL_ERROR = error_body("internal_error", INTERNAL_ERROR_MESSAGE)


@dataclass(frozen=True)
class Limits:
    """What clients may take of the server; the defaults are ryu_lag's (tests shrink them)."""

    head_seconds: float = HEAD_SECONDS
    body_seconds: float = BODY_SECONDS
    stall_seconds: float = STALL_SECONDS
    max_body: int = MAX_BODY
    connections: int = MAX_CONNECTIONS
    connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT


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


class RequestTimeout(Exception):
    """A request's head or body did not arrive in time."""


class LimitedHttpProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet's HTTP/1.1 connection handler with deadlines, the body read up front, and JSON errors."""

    def __init__(self, conn_state: list[Any], server: eventlet.wsgi.Server, limits: Limits) -> None:
        self.limits = limits
        super().__init__(conn_state, server)  # serves the connection

    def handle_one_request(self) -> None:
        """Read one request's head and body within their deadlines, then let eventlet answer it."""
        try:
            with eventlet.Timeout(self.limits.head_seconds, RequestTimeout):
                complete = self._read_head()
            if complete:
                with eventlet.Timeout(self.limits.body_seconds, RequestTimeout):
                    complete = self._read_body()
        except RequestTimeout:
            self.send_error(408, "the request did not arrive in time")
            return
        except eventlet.wsgi.ChunkReadError:
            self.send_error(400, "the chunked request body is malformed")
            return
        except OSError:  # the client closed mid-request, or stalled for STALL_SECONDS
            self.close_connection = 1
            return
        if not complete:
            return
        self.server.outstanding_requests += 1
        try:
            self.handle_one_response()
        except OSError as exc:
            if support.get_errno(exc) not in eventlet.wsgi.BROKEN_SOCK:
                raise
        finally:
            self.server.outstanding_requests -= 1

    def _read_head(self) -> bool:
        """The request line and headers, checked, as ``self.environ``; False if refused or closed."""
        self.command = None  # not the previous request's: send_error reads it
        self.raw_requestline = self._read_request_line()
        self.conn_state[2] = eventlet.wsgi.STATE_REQUEST
        if not self.raw_requestline:  # the client closed, or the socket failed
            self.close_connection = 1
            return False
        if len(self.raw_requestline) >= self.server.url_length_limit:
            self.send_error(414, f"the request line is over {self.server.url_length_limit} bytes")
            return False
        request_file = self.rfile
        try:
            self.rfile = eventlet.wsgi.FileObjectForHeaders(self.rfile)
            if not self.parse_request():  # it has answered with send_error
                return False
        except (eventlet.wsgi.HeaderLineTooLong, eventlet.wsgi.HeadersTooLarge):
            self.send_error(431, f"a header line is over {eventlet.wsgi.MAX_HEADER_LINE} bytes "
                                 f"or the headers over {eventlet.wsgi.MAX_TOTAL_HEADER_SIZE}")
            return False
        finally:
            self.rfile = request_file
        refusal = self._framing_refusal()
        if refusal is not None:
            self.send_error(*refusal)
            return False
        self.environ = self.get_environ()
        self.application = self.server.app
        return True

    def _framing_refusal(self) -> tuple[int, str] | None:
        """Why the headers do not say where the body ends (status, message), or None."""
        lengths = self.headers.get_all("Content-Length") or []
        encodings = self.headers.get_all("Transfer-Encoding") or []
        if lengths and encodings:
            return 400, "Content-Length and Transfer-Encoding together"
        if len(lengths) > 1:
            return 400, "more than one Content-Length"
        if encodings and [e.strip().lower() for e in encodings] != ["chunked"]:
            return 501, "the only Transfer-Encoding served is chunked"
        if lengths and not (lengths[0].isascii() and lengths[0].isdecimal()):
            return 400, "Content-Length is not a non-negative integer"
        if lengths and int(lengths[0]) > self.limits.max_body:
            return 413, f"the request body is over {self.limits.max_body} bytes"
        return None

    def _read_body(self) -> bool:
        """Read the whole body; the app gets it as a file of known length. False if refused or cut short."""
        received = self.environ["eventlet.input"]  # eventlet's reader; kept there for its bookkeeping
        if not received.chunked_input and not received.content_length:
            return True
        body = received.read(self.limits.max_body + 1)
        if len(body) > self.limits.max_body:
            self.send_error(413, f"the request body is over {self.limits.max_body} bytes")
            return False
        if not received.chunked_input and len(body) < received.content_length:
            self.close_connection = 1  # the client closed before the end of its body
            return False
        self.environ["wsgi.input"] = io.BytesIO(body)
        self.environ["CONTENT_LENGTH"] = str(len(body))
        self.environ["wsgi.input_terminated"] = True
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer ``code`` with the API's JSON error and close the connection.

        For what the server refuses itself; ``http.server``'s ``parse_request`` calls it too.
        """
        text = message or explain or http.HTTPStatus(code).phrase
        self.close_connection = 1
        try:
            self.wfile.write(error_response(code, text, body=getattr(self, "command", None) != "HEAD"))
            self.wfile.flush()
        except OSError:
            pass  # the client is gone: nothing to answer


def _refuse(client_socket: Any) -> None:
    """Answer a connection over the caps at once with a JSON 503 (eventlet's server closes it)."""
    try:
        client_socket.settimeout(0.0)  # a fresh connection's send buffer is empty
        client_socket.sendall(error_response(503, "too many open connections; retry later"))
    except OSError:
        pass


class ConnectionPool(eventlet.GreenPool):
    """The pool eventlet's server runs a greenthread per connection in, with caps that refuse.

    ``eventlet.wsgi.server`` calls ``spawn(process_request, [address, socket, state])`` for
    each accepted connection; a plain pool blocks there when full, and with it the accept
    loop. This one answers a connection over the total or per-address cap with a 503 instead.
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits.connections)
        self.limits = limits
        self.open_by_client: collections.Counter[str] = collections.Counter()
        self.refused = 0
        self._refused_logged = 0
        self._next_log = 0.0

    def spawn(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection = args[0]
        client = connection[0][0]
        if self.free() <= 0 or self.open_by_client[client] >= self.limits.connections_per_client:
            self._count_refusal(client)
            return eventlet.spawn(_refuse, connection[1])
        self.open_by_client[client] += 1
        thread = super().spawn(function, *args, **kwargs)
        thread.link(self._closed, client)
        return thread

    def _closed(self, _thread: Any, client: str) -> None:
        self.open_by_client[client] -= 1
        if not self.open_by_client[client]:
            del self.open_by_client[client]

    def _count_refusal(self, client: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now >= self._next_log:
            LOG.warning(
                "REST server refused %d connection(s) over its caps (%d open, %d per address), latest from %s",
                self.refused - self._refused_logged, self.limits.connections, self.limits.connections_per_client, client,
            )
            self._refused_logged, self._next_log = self.refused, now + REFUSAL_LOG_SECONDS


def fd_limit_for(limits: Limits) -> int:
    """Raise this process's soft open-file limit to what ``limits`` need, as far as the hard
    limit allows; the soft limit it leaves."""
    needed = limits.connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        LOG.warning("open-file limit %d is below the %d the REST server's connection cap needs (ulimit -n)", target, needed)
    return target


def serve(listener: Any, app: WsgiApp, limits: Limits = Limits()) -> None:
    """Serve ``app`` on the green listening socket ``listener`` within ``limits`` until it closes."""
    eventlet.wsgi.server(
        listener,
        guarded(app),
        custom_pool=ConnectionPool(limits),
        protocol=functools.partial(LimitedHttpProtocol, limits=limits),
        socket_timeout=limits.stall_seconds,
        log_output=False,
        debug=False,
    )


class QuietWSGIServer(hub.WSGIServer):
    """Ryu's WSGI server (``ryu.app.wsgi.WSGIServer``) without eventlet's access log and
    traceback pages, within :class:`Limits`.

    Built on Ryu's hub server, not on ``ryu.app.wsgi.WSGIServer``: that one's ``__init__``
    finds its parent through the module name :func:`install` rebinds.
    """

    def __init__(self, application: WsgiApp, **config: Any) -> None:
        super().__init__((CONF.wsapi_host, CONF.wsapi_port), application, **config)

    def __call__(self) -> None:
        self.serve_forever()

    def serve_forever(self) -> None:
        """Serve the application until the process stops (what Ryu's manager runs)."""
        limits = Limits()
        fd_limit_for(limits)
        serve(self.server, self.handle, limits)


def install() -> None:
    """Make Ryu's manager start :class:`QuietWSGIServer` (before it starts its WSGI server).

    Ryu's manager builds its server as ``ryu.app.wsgi.WSGIServer(application)`` after every
    app is made, so an app's ``__init__`` is early enough.
    """
    ryu.app.wsgi.WSGIServer = QuietWSGIServer  # type: ignore[misc]
