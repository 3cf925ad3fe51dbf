"""The quiet WSGI server: what escapes the application becomes a logged JSON 500; deadlines,
connection caps, the server's own refusals as JSON errors, chunked bodies.

The HTTP tests serve the real API (``Rig``) with ``rest.server.serve`` on a loopback port,
in a thread of its own with its own eventlet hub, under small :class:`Limits`, and talk
to it with raw sockets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
import pytest
import ryu.app.wsgi

from rest import server
from tests.rest.conftest import DPID_S, Rig

# ---- the guard and the install -------------------------------------------------------


def _call(app: server.WsgiApp) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/lag/x"}, start_response))
    return seen["status"], seen["headers"], body


def test_guarded_passes_a_response_through() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return [b""]

    assert _call(server.guarded(app)) == ("204 No Content", {}, b"")


def test_guarded_turns_an_escaping_exception_into_a_logged_json_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # started, then failed
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="ryu_lag.rest"):
        status, headers, body = _call(server.guarded(app))
    assert status == "500 Internal Server Error"
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {"error": {"code": "internal_error", "message": server.INTERNAL_ERROR_MESSAGE}}
    assert b"secret" not in body and b"Traceback" not in body
    assert "GET /lag/x failed" in caplog.text and "secret detail" in caplog.text  # the log has the details


def test_install_makes_ryus_manager_start_the_quiet_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ryu.app.wsgi, "WSGIServer", ryu.app.wsgi.WSGIServer)  # restored after the test
    server.install()
    assert ryu.app.wsgi.WSGIServer is server.QuietWSGIServer


def test_fd_limit_is_raised_to_the_connection_cap_as_far_as_the_hard_limit_allows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limits = server.Limits(connections=1000)
    needed = 1000 + server.FD_RESERVE
    current = {"soft": 1024, "hard": 4096}
    monkeypatch.setattr(server.resource, "getrlimit", lambda _which: (current["soft"], current["hard"]))
    monkeypatch.setattr(server.resource, "setrlimit", lambda _which, pair: current.update(soft=pair[0], hard=pair[1]))
    assert server.fd_limit_for(limits) == needed and current == {"soft": needed, "hard": 4096}
    current.update(soft=512, hard=800)
    with caplog.at_level(logging.WARNING, logger="ryu_lag.rest"):
        assert server.fd_limit_for(limits) == 800 and current["soft"] == 800
    assert f"below the {needed}" in caplog.text


def test_the_server_reads_as_much_body_as_the_api_accepts() -> None:
    from rest import api

    assert server.Limits().max_body == server.MAX_BODY == api.MAX_BODY


# ---- served over HTTP ----------------------------------------------------------------

LIMITS = server.Limits(
    head_seconds=0.5, body_seconds=0.5, stall_seconds=1.0, max_body=1024, connections=6, connections_per_client=3
)
CLIENT, OTHER_CLIENT = "127.0.0.1", "127.0.0.2"
IO_SECONDS = 10.0  # what a test socket waits for the server at most
SLACK_SECONDS = 5.0  # past a deadline, room for a noisy VM


class Served:
    """``rest.server.serve`` on a loopback port in a thread with its own eventlet hub."""

    def __init__(self) -> None:
        self.app: server.WsgiApp | None = None
        ready = threading.Event()
        self.port = 0

        def run() -> None:
            listener = eventlet.listen(("127.0.0.1", 0))
            self.port = listener.getsockname()[1]
            ready.set()
            server.serve(listener, self._app, LIMITS)

        threading.Thread(target=run, name="served-api", daemon=True).start()
        assert ready.wait(IO_SECONDS)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)

    def connect(self, source: str = CLIENT) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=IO_SECONDS, source_address=(source, 0))


@pytest.fixture(scope="module")
def served() -> Served:
    return Served()


@pytest.fixture
def api(served: Served, rig: Rig) -> Iterator[Served]:
    """The served API over ``rig``, with switch 1 connected."""
    rig.connect()
    served.app = rig.wsgi
    yield served
    served.app = None


def wait_until(condition: Callable[[], bool], seconds: float = IO_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self.body = raw.read()

    def error(self) -> dict[str, Any]:
        """The ``error`` object: the API's JSON error form."""
        assert self.headers["content-type"] == "application/json", (self.status, self.headers, self.body)
        assert int(self.headers["content-length"]) == len(self.body)
        document = json.loads(self.body)
        assert set(document) == {"error"} and {"code", "message"} <= set(document["error"]), document
        return document["error"]


def read_response(sock: socket.socket, method: str = "GET") -> Response:
    raw = http.client.HTTPResponse(sock, method=method)
    raw.begin()
    return Response(raw)


def exchange(served: Served, data: bytes, source: str = CLIENT) -> Response:
    """Send ``data`` on a new connection and read one response."""
    with served.connect(source) as sock:
        sock.sendall(data)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """The server has closed ``sock`` (its end of stream, or a reset), within IO_SECONDS."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /lag/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Many: aaaaaaaaaaaaaaaa\r\n" * 4000 + b"\r\n", 431, "headers_too_large"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +5\r\n\r\n{}   ", 400, "bad_request"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n", 400, "bad_request"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
         400, "bad_request"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "bad_request"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "not_implemented"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
         413, "payload_too_large"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         + chunked(b"[" + b"1," * 600 + b"1]", 100), 413, "payload_too_large"),
        (b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
         400, "bad_request"),
        (b"GET /lag HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /lag HTTP/x.y\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n", 400, "bad_request"),
    ],
    ids=[
        "request-line-too-long", "header-line-too-long", "headers-too-large", "negative-length", "signed-length",
        "non-numeric-length", "two-lengths", "length-and-chunked", "unsupported-coding", "length-over-max-body",
        "chunked-over-max-body", "bad-chunk-size", "http2-version", "bad-version", "tls-hello",
    ],
)
def test_what_the_server_refuses_itself_is_a_json_error_and_changes_nothing(
    api: Served, rig: Rig, request_bytes: bytes, status: int, code: str
) -> None:
    before = rig.snapshot()
    with api.connect() as sock:
        sock.sendall(request_bytes)
        response = read_response(sock)
        assert (response.status, response.error()["code"]) == (status, code), response.body
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert rig.snapshot() == before


def test_a_refusal_to_head_has_no_body(api: Served) -> None:
    with api.connect() as sock:
        sock.sendall(b"HEAD /lag HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n")
        response = http.client.HTTPResponse(sock, method="HEAD")
        response.begin()
        assert response.status == 400 and response.getheader("Content-Type") == "application/json"
        assert response.read() == b"" and closed_by_server(sock)


def test_a_chunked_body_reaches_the_api_like_any_other(api: Served, rig: Rig) -> None:
    body = json.dumps({"name": "trunk", "ports": [1, 2], "rate": "fast"}).encode()
    with api.connect() as sock:
        sock.sendall(
            f"POST /lag/{DPID_S} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(body)
        )
        created = read_response(sock, "POST")
        assert created.status == 201, created.body
        assert json.loads(created.body)["config"]["ports"] == [1, 2]
        # The connection stays usable: the whole body, and nothing more, was the first request's.
        sock.sendall(f"GET /lag/{DPID_S}/trunk HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = read_response(sock)
        assert got.status == 200 and json.loads(got.body)["config"]["rate"] == "fast"
    assert rig.service.configs[1]["trunk"].ports == (1, 2)


def test_expect_100_continue_then_a_body(api: Served, rig: Rig) -> None:
    body = json.dumps({"ports": [3]}).encode()
    with api.connect() as sock:
        sock.sendall(
            f"POST /lag/{DPID_S} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        assert read_response(sock, "POST").status == 201
    assert "bond0" in rig.service.configs[1]


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /lag HTTP/1.1\r\nHo", b"POST /lag/" + DPID_S.encode() + b" HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"po"],
    ids=["idle", "partial-head", "partial-body"],
)
def test_a_request_that_misses_its_deadline_gets_a_json_408_and_is_closed(api: Served, rig: Rig, sent: bytes) -> None:
    before = rig.snapshot()
    with api.connect() as sock:
        start = time.monotonic()
        sock.sendall(sent)
        response = read_response(sock)
        waited = time.monotonic() - start
        assert (response.status, response.error()["code"]) == (408, "request_timeout")
        assert closed_by_server(sock)
    deadline = LIMITS.body_seconds if b"\r\n\r\n" in sent else LIMITS.head_seconds  # the body's runs from the head's end
    assert deadline - 0.1 <= waited <= deadline + SLACK_SECONDS, waited
    assert rig.snapshot() == before


def test_a_byte_a_tick_does_not_extend_the_deadline(api: Served) -> None:
    head = b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000  # never ends in time
    with api.connect() as sock:
        start = time.monotonic()
        for byte in head:
            if select.select([sock], [], [], 0.05)[0]:  # the server has answered
                break
            sock.sendall(bytes([byte]))
            assert time.monotonic() - start < LIMITS.head_seconds + SLACK_SECONDS, "a slow head ran past its deadline"
        response = read_response(sock)
        assert (response.status, response.error()["code"]) == (408, "request_timeout")
        assert time.monotonic() - start < LIMITS.head_seconds + SLACK_SECONDS


def test_connections_over_the_caps_are_refused_at_once_with_a_json_503(api: Served) -> None:
    held = [api.connect(CLIENT) for _ in range(LIMITS.connections_per_client)]
    try:
        start = time.monotonic()
        response = exchange(api, b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", CLIENT)
        assert (response.status, response.error()["code"]) == (503, "too_many_connections")
        assert time.monotonic() - start < LIMITS.head_seconds  # at once, not after a deadline
        # Another address is under its own cap.
        assert exchange(api, b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", OTHER_CLIENT).status == 200
        # The total cap: fill it from other addresses.
        held += [api.connect(f"127.0.0.{3 + i}") for i in range(LIMITS.connections - LIMITS.connections_per_client)]
        response = exchange(api, b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "127.0.1.1")
        assert (response.status, response.error()["code"]) == (503, "too_many_connections")
    finally:
        for sock in held:
            sock.close()
    # Closed connections free their places.
    wait_until(lambda: exchange(api, b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", CLIENT).status == 200)


def test_keep_alive_serves_several_requests_then_an_idle_connection_gets_its_408(api: Served) -> None:
    with api.connect() as sock:
        for _ in range(3):
            sock.sendall(b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = read_response(sock)
            assert response.status == 200 and "connection" not in response.headers
        idle = time.monotonic()
        response = read_response(sock)
        assert (response.status, response.error()["code"]) == (408, "request_timeout")
        assert LIMITS.head_seconds - 0.1 <= time.monotonic() - idle <= LIMITS.head_seconds + SLACK_SECONDS
        assert closed_by_server(sock)


def test_a_client_that_does_not_read_its_answers_is_cut_off(api: Served) -> None:
    """Pipelined requests whose answers (the document, some 19 kB each) are never read: once
    the socket buffers are full, the server's write stalls and the connection is closed."""
    requests = 400
    with api.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /lag/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * requests)
        time.sleep(LIMITS.stall_seconds + 1.0)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                received += chunk
    answered = received.count(b"HTTP/1.1 200 OK")
    assert 0 < answered < requests and b"408" not in received.split(b"\r\n", 1)[0]
