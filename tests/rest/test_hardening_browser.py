"""A web page in a browser on the controller's host must not reach the API.

Without a token (the loopback default) a cross-site form POST used to create a bond, and a
page on a name made to resolve to 127.0.0.1 (DNS rebinding) was answered. curl and the
Python client send no Origin and the address they connect to as Host: they keep working.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from ryu.app.wsgi import WSGIApplication
from webob import Request, Response

from rest.api import HostNames, register
from tests.rest.conftest import DPID_S, Rig, error_of

FORM = "application/x-www-form-urlencoded"  # what an HTML form and curl -d send
BODY = b'{"ports": [1, 2]}'
TOKEN = "browser-test-token"


def create(rig: Rig, headers: dict[str, str], **kw) -> Response:
    return rig.post(f"/lag/{DPID_S}", raw=BODY, content_type=FORM, headers=headers, **kw)


def refused(rig: Rig, response: Response, code: str) -> None:
    assert response.status_code == 403, response.body
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},  # a form on another site
        {"Origin": "http://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed page or a local file
        {"Origin": "http://127.0.0.1:3000", "Host": "127.0.0.1:8080"},  # another local server's page
        {"Origin": "https://localhost:8080", "Host": "localhost"},  # another port by the scheme's default
        {"Origin": "http://localhost:0", "Host": "localhost"},
        {"Sec-Fetch-Site": "cross-site"},  # no Origin (a navigation), still another site's
        {"Origin": "not a url"},
    ],
)
def test_a_web_page_of_another_origin_cannot_create_a_bond(connected: Rig, headers: dict[str, str]):
    before = connected.snapshot()
    refused(connected, create(connected, headers), "forbidden_origin")
    assert connected.snapshot() == before


@pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", "127.0.0.1.evil.example:8080", "localhost.",
                                  "10.0.0.1:8080"])
def test_a_host_that_does_not_name_the_api_is_refused(connected: Rig, host: str):
    """A rebinding page is same-origin with itself: its Origin matches its Host, the Host gives it away."""
    before = connected.snapshot()
    for headers in ({"Host": host}, {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}):
        refused(connected, create(connected, headers), "forbidden_host")
        refused(connected, connected.get("/lag", headers=headers), "forbidden_host")
        refused(connected, connected.get("/metrics", headers=headers), "forbidden_host")
    assert connected.snapshot() == before


@pytest.mark.parametrize("host", ["bad host", "127.0.0.1:65536", "[::1", "127.0.0.1:8080@evil.example"])
def test_a_malformed_host_is_refused(connected: Rig, host: str):
    refused(connected, connected.get("/lag", headers={"Host": host}), "forbidden_host")


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.2",
                                  socket.gethostname()])
def test_curl_and_clients_are_served(tmp_path: Path, host: str):
    rig = Rig(tmp_path)
    rig.connect()
    assert create(rig, {"Host": host}).status_code == 201  # curl -d: form type, no Origin
    assert rig.get("/lag", headers={"Host": host, "Accept": "*/*"}).status_code == 200
    assert rig.get("/metrics", headers={"Host": host}).status_code == 200


def test_a_request_without_host_is_served(connected: Rig):
    """HTTP/1.0 may leave Host out; no browser does."""
    req = Request.blank("/lag")
    del req.environ["HTTP_HOST"]
    assert req.get_response(connected.wsgi).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"},
        {"Host": "localhost", "Origin": "http://LOCALHOST:80"},
        {"Host": "[::1]:8080", "Origin": "http://[::1]:8080", "Sec-Fetch-Site": "same-origin"},
        {"Host": "127.0.0.1:8080", "Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_the_apis_own_pages_origin_is_served(connected: Rig, headers: dict[str, str]):
    assert create(connected, headers).status_code == 201


def test_unmatched_paths_are_guarded_too(connected: Rig):
    for path, method in (("/lag/nowhere", "GET"), (f"/lag/{DPID_S}", "PATCH"), (f"/lag/{DPID_S}", "OPTIONS")):
        req = Request.blank(path, method=method, headers={"Origin": "http://evil.example"})
        response = req.get_response(connected.wsgi)
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden_origin", path


def test_with_a_token_cross_site_is_still_refused_and_any_host_served(tmp_path: Path):
    """A page cannot send the token, so Host is left alone: the API may be reached by any name."""
    rig = Rig(tmp_path, token=TOKEN)
    rig.connect()
    refused(rig, create(rig, {"Origin": "http://evil.example"}), "forbidden_origin")
    refused(rig, rig.get("/metrics", headers={"Sec-Fetch-Site": "cross-site"}), "forbidden_origin")
    assert create(rig, {"Host": "controller.example.net:8080"}).status_code == 201
    assert rig.get("/metrics", headers={"Host": "controller.example.net:8080"}).status_code == 200


def wildcard_api(rig: Rig) -> WSGIApplication:
    wsgi = WSGIApplication()
    register(wsgi, rig, host="0.0.0.0")
    return wsgi


def test_a_wildcard_bind_serves_any_address_and_the_machines_names(rig: Rig):
    wsgi = wildcard_api(rig)
    for host in ("10.1.2.3:8080", "[2001:db8::1]:8080", "127.0.0.1", f"{socket.gethostname()}:8080",
                 socket.getfqdn()):
        assert Request.blank("/lag", headers={"Host": host}).get_response(wsgi).status_code == 200, host
    response = Request.blank("/lag", headers={"Host": "evil.example:8080"}).get_response(wsgi)
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden_host"


@pytest.mark.parametrize(
    "bind, allowed, refused_hosts",
    [
        ("127.0.0.1", ["127.0.0.1", "127.0.0.53", "::1", "localhost"], ["10.0.0.1", "evil.example"]),
        ("localhost", ["127.0.0.1", "localhost"], ["192.0.2.5", "evil.example"]),
        ("::1", ["::1", "127.0.0.1", "localhost"], ["2001:db8::1"]),
        ("192.0.2.5", ["192.0.2.5"], ["192.0.2.6", "127.0.0.1", "localhost", "evil.example"]),
        ("::", ["192.0.2.6", "2001:db8::1", "localhost"], ["evil.example"]),
    ],
)
def test_host_names_of_a_bind_address(bind: str, allowed: list[str], refused_hosts: list[str]):
    hosts = HostNames.of_bind(bind)
    assert all(hosts.allow(h) for h in allowed), hosts
    assert not any(hosts.allow(h) for h in refused_hosts), hosts
