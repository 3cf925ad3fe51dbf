"""Every error the API answers: JSON, the right status and code, and nothing changed."""

from __future__ import annotations

import io
import json
import sqlite3
from typing import Any

import pytest
from webob import Request

from rest import views
from rest.api import MAX_BODY
from tests.rest.conftest import DPID_S, Rig, error_of

SWITCH = f"/lag/{DPID_S}"
BOND0 = f"{SWITCH}/bond0"


@pytest.fixture
def busy(connected: Rig) -> Rig:
    """Switch 1 (ports 1-4) with bond0 on ports 1-2."""
    assert connected.post(SWITCH, {"ports": [1, 2]}).status_code == 201
    return connected


def refused(rig: Rig, method: str, path: str, status: int, code: str, **kw: Any) -> dict[str, Any]:
    """Send a request that must be refused; check its error and that nothing changed."""
    before = rig.snapshot()
    response = rig.request(method, path, **kw)
    assert response.status_code == status, response.body
    error = error_of(response)
    assert error["code"] == code and error["message"]
    assert b"Traceback" not in response.body
    assert rig.snapshot() == before
    return error


# ---- 400 ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"   ", b'{"ports": [1, 2],}', b'{"ports": [NaN]}', b"\xff\xfe{}", b"[" * 30000 + b"]" * 30000],
    ids=["truncated", "empty", "blank", "trailing-comma", "nan", "not-utf8", "deeply-nested"],
)
def test_malformed_json(busy: Rig, raw: bytes):
    for method, path in (("POST", SWITCH), ("PUT", f"{SWITCH}/bond9")):
        refused(busy, method, path, 400, "malformed_json", raw=raw, content_type="application/json")


@pytest.mark.parametrize(
    "body, field",
    [
        ([1, 2], "body"),
        ("ports", "body"),
        ({}, "ports"),
        ({"ports": []}, "ports"),
        ({"ports": [1, 1]}, "ports"),
        ({"ports": [0]}, "ports"),
        ({"ports": ["1"]}, "ports"),
        ({"ports": [True]}, "ports"),
        ({"ports": 1}, "ports"),
        ({"ports": [1], "vlan": 5}, "vlan"),
        ({"ports": [3], "mode": "on"}, "mode"),
        ({"ports": [3], "rate": "medium"}, "rate"),
        ({"ports": [3], "key": 0}, "key"),
        ({"ports": [3], "key": 70000}, "key"),
        ({"ports": [3], "system_priority": -1}, "system_priority"),
        ({"ports": [3], "port_priority": 1.5}, "port_priority"),
        ({"ports": [3], "min_links": 2}, "min_links"),
        ({"ports": [3], "system": "00:00:00:00:00:00"}, "system"),
        ({"ports": [3], "name": "bad name"}, "name"),
        ({"ports": [3], "name": ["x"]}, "name"),
        ({"ports": [3], "name": "macs"}, "name"),
        ({"ports": [3], "name": "bond9\n"}, "name"),  # a regex "$" would let the newline through
        ({"ports": [3], "system": "02:00:00:00:00:01\n"}, "system"),
        ({"ports": [65536]}, "ports"),  # LACP carries a member's port number in 16 bits
    ],
)
def test_invalid_fields_on_post(busy: Rig, body: Any, field: str):
    error = refused(busy, "POST", SWITCH, 400, "invalid_field", body=body)
    assert error["field"] == field


def test_invalid_fields_on_put(busy: Rig):
    assert refused(busy, "PUT", BOND0, 400, "invalid_field", body={"ports": [1, 2], "name": "other"})["field"] == "name"
    assert refused(busy, "PUT", f"{SWITCH}/bad!name", 400, "invalid_field", body={"ports": [3]})["field"] == "name"
    assert refused(busy, "PUT", BOND0, 400, "invalid_field", body={"ports": [1, 2], "lacp": True})["field"] == "lacp"


def test_malformed_dpid(rig: Rig):
    for path in ("/lag/1", "/lag/00000000000000AB", "/lag/0x1/bond0", "/lag/zzzzzzzzzzzzzzzz/macs"):
        refused(rig, "GET", path, 400, "invalid_dpid")
    refused(rig, "POST", "/lag/1", 400, "invalid_dpid", body={"ports": [1]})


# ---- 401 is in test_security.py; 404 ---------------------------------------------------
def test_not_found(busy: Rig):
    refused(busy, "GET", f"{SWITCH}/nope", 404, "unknown_bond")
    refused(busy, "DELETE", f"{SWITCH}/nope", 404, "unknown_bond")
    refused(busy, "GET", "/lag/0000000000000002", 404, "unknown_switch")
    refused(busy, "DELETE", "/lag/0000000000000002/bond0", 404, "unknown_switch")
    refused(busy, "GET", f"{SWITCH}/bond0/members", 404, "not_found")
    refused(busy, "GET", "/lag/", 404, "not_found")


# ---- 405 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("POST", "/lag", "GET, HEAD"),
        ("DELETE", "/lag", "GET, HEAD"),
        ("PUT", SWITCH, "GET, HEAD, POST"),
        ("DELETE", SWITCH, "GET, HEAD, POST"),
        ("PATCH", BOND0, "DELETE, GET, HEAD, PUT"),
        ("POST", BOND0, "DELETE, GET, HEAD, PUT"),
        ("PUT", f"{SWITCH}/macs", "DELETE, GET, HEAD"),
        ("POST", "/lag/openapi.json", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
    ],
)
def test_method_not_allowed(busy: Rig, method: str, path: str, allow: str):
    before = busy.snapshot()
    r = busy.request(method, path, body={"ports": [3]})
    assert r.status_code == 405 and r.headers["Allow"] == allow
    assert error_of(r)["code"] == "method_not_allowed"
    assert busy.snapshot() == before


def test_options_lists_the_methods(busy: Rig):
    r = busy.request("OPTIONS", BOND0)
    assert r.status_code == 204 and r.headers["Allow"] == "DELETE, GET, HEAD, PUT" and r.body == b""


# ---- 409 --------------------------------------------------------------------------------------
def test_conflicts(busy: Rig):
    assert refused(busy, "POST", SWITCH, 409, "conflict", body={"ports": [2, 3]})["field"] == "ports"
    assert refused(busy, "POST", SWITCH, 409, "conflict", body={"ports": [3], "name": "bond0"})["field"] == "name"
    assert refused(busy, "POST", SWITCH, 409, "conflict", body={"ports": [3], "key": 1})["field"] == "key"
    assert refused(busy, "PUT", f"{SWITCH}/other", 409, "conflict", body={"ports": [1]})["field"] == "ports"
    error = refused(busy, "PUT", f"{SWITCH}/other", 409, "conflict", body={"ports": [3], "key": 1})
    assert "bond0" in error["message"]


def test_conflicts_on_a_switch_not_connected(rig: Rig):
    rig.post(SWITCH, {"ports": [1, 2]})
    refused(rig, "POST", SWITCH, 409, "conflict", body={"ports": [2]})


# ---- 413 --------------------------------------------------------------------------------------
def test_body_too_large(busy: Rig):
    big = json.dumps({"ports": [3], "name": "x" * (MAX_BODY + 1)}).encode()
    refused(busy, "POST", SWITCH, 413, "payload_too_large", raw=big, content_type="application/json")
    refused(busy, "PUT", BOND0, 413, "payload_too_large", raw=big, content_type="application/json")


def test_body_too_large_without_content_length(busy: Rig):
    """A chunked body has no Content-Length: the limit holds while reading."""
    req = Request.blank(SWITCH, method="POST", content_type="application/json")
    req.environ["wsgi.input"] = io.BytesIO(b" " * (MAX_BODY + 10) + b'{"ports": [3]}')
    req.environ.pop("CONTENT_LENGTH", None)
    req.environ["wsgi.input_terminated"] = True
    before = busy.snapshot()
    r = req.get_response(busy.wsgi)
    assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"
    assert busy.snapshot() == before


def test_body_at_the_limit_is_accepted(connected: Rig):
    body = json.dumps({"ports": [3]}).encode()
    raw = body + b" " * (MAX_BODY - len(body))
    assert connected.post(SWITCH, raw=raw, content_type="application/json").status_code == 201


# ---- 415 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type, raw",
    [
        ("text/plain", b'{"ports": [3]}'),
        ("application/xml", b"<bond/>"),
        ("multipart/form-data; boundary=x", b'{"ports": [3]}'),
        ("application/x-www-form-urlencoded", b"ports=3"),
        (None, b"ports=3"),
    ],
)
def test_unsupported_media_type(busy: Rig, content_type: str | None, raw: bytes):
    refused(busy, "POST", SWITCH, 415, "unsupported_media_type", raw=raw, content_type=content_type)
    refused(busy, "PUT", BOND0, 415, "unsupported_media_type", raw=raw, content_type=content_type)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", None, "application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_json_accepted_as(connected: Rig, content_type: str | None):
    """curl -d sends the form type: a body that parses as JSON is taken as JSON."""
    r = connected.post(SWITCH, raw=b'{"ports":[1,2]}', content_type=content_type)
    assert r.status_code == 201 and r.json["config"]["ports"] == [1, 2]


# ---- 422 --------------------------------------------------------------------------------------
def test_port_the_switch_does_not_have(busy: Rig):
    error = refused(busy, "POST", SWITCH, 422, "unknown_port", body={"ports": [3, 99]})
    assert error["field"] == "ports" and "99" in error["message"]
    refused(busy, "PUT", BOND0, 422, "unknown_port", body={"ports": [1, 2, 99]})


# ---- 503 and 500 -------------------------------------------------------------------------------
def test_state_database_failure(busy: Rig):
    busy.store._db.close()
    busy.store._db = sqlite3.connect(f"file:{busy.db}?mode=ro", uri=True)  # every write fails
    error = refused(busy, "POST", SWITCH, 503, "store_unavailable", body={"ports": [3]})
    assert "nothing was changed" in error["message"]
    refused(busy, "PUT", BOND0, 503, "store_unavailable", body={"ports": [1, 2, 3]})
    refused(busy, "DELETE", BOND0, 503, "store_unavailable")


def test_internal_error_is_json_without_details(busy: Rig, monkeypatch, caplog):
    def explode(*_: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(views, "switch_list", explode)
    r = busy.get("/lag")
    assert r.status_code == 500 and error_of(r)["code"] == "internal_error"
    assert b"secret" not in r.body and b"Traceback" not in r.body
    assert "secret detail" in caplog.text  # the log has it
