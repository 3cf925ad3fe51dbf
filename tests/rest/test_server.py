"""The quiet WSGI server: what escapes the application becomes a logged JSON 500."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import ryu.app.wsgi

from rest import server


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
