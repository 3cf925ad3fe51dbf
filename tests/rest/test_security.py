"""The API token (Bearer, constant time, never logged) and the refusal of an insecure bind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from oslo_config import cfg
from webob import Request

from rest.api import insecure_bind, is_loopback
from ryu_lag import options
from tests.rest.conftest import DPID_S, Rig, error_of

TOKEN = "s3cret-Token_value"


@pytest.fixture
def guarded(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path, token=TOKEN)
    rig.connect()
    return rig


@pytest.mark.parametrize(
    "path, method",
    [("/lag", "GET"), (f"/lag/{DPID_S}", "GET"), (f"/lag/{DPID_S}", "POST"), (f"/lag/{DPID_S}/bond0", "PUT"),
     (f"/lag/{DPID_S}/bond0", "DELETE"), (f"/lag/{DPID_S}/macs", "DELETE"), ("/lag/openapi.json", "GET"),
     (f"/lag/{DPID_S}/bond0", "PATCH"), ("/lag/nowhere/at/all", "GET")],
)
def test_every_route_but_metrics_needs_the_token(guarded: Rig, path: str, method: str):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer"}, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        before = guarded.snapshot()
        r = guarded.request(method, path, body={"ports": [1, 2]}, headers=headers, auth=False)
        assert r.status_code == 401, (headers, r.body)
        assert error_of(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN.encode() not in r.body
        assert guarded.snapshot() == before


def test_the_right_token_works(guarded: Rig):
    assert guarded.post(f"/lag/{DPID_S}", {"ports": [1, 2]}).status_code == 201
    r = guarded.get("/lag", headers={"Authorization": f"bearer   {TOKEN}  "}, auth=False)
    assert r.status_code == 200


def test_metrics_needs_no_token(guarded: Rig):
    r = guarded.get("/metrics", auth=False)
    assert r.status_code == 200 and b"ryu_lag_switches_connected 1.0" in r.body


def test_non_latin1_token_header_is_just_wrong(guarded: Rig):
    req = Request.blank("/lag")
    req.environ["HTTP_AUTHORIZATION"] = "Bearer \u20ac"
    assert req.get_response(guarded.wsgi).status_code == 401


def test_token_never_logged(guarded: Rig, caplog):
    caplog.set_level(logging.DEBUG)
    guarded.get("/lag")
    guarded.get("/lag", headers={"Authorization": f"Bearer {TOKEN}wrong"}, auth=False)
    guarded.post(f"/lag/{DPID_S}", {"ports": [99]})
    assert TOKEN not in caplog.text


def test_no_token_configured_ignores_authorization(rig: Rig):
    assert rig.get("/lag", headers={"Authorization": "Bearer anything"}).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_may_run_without_token(host: str):
    assert is_loopback(host)
    assert insecure_bind(host, None, False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "ctl.example.net"])
def test_other_addresses_need_a_token_or_insecure(host: str):
    problem = insecure_bind(host, None, False)
    assert problem is not None
    assert host in problem and "RYU_LAG_API_TOKEN" in problem and "--lag-insecure" in problem
    assert insecure_bind(host, "t", False) is None
    assert insecure_bind(host, None, True) is None


def _conf(argv: list[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf(argv, project="ryu_lag_test", default_config_files=[])
    return conf


def test_token_option_then_environment(monkeypatch):
    monkeypatch.delenv(options.TOKEN_ENV, raising=False)
    assert options.api_token(_conf([])) is None
    monkeypatch.setenv(options.TOKEN_ENV, "from-env")
    assert options.api_token(_conf([])) == "from-env"
    assert options.api_token(_conf(["--lag-api-token", "from-flag"])) == "from-flag"
    monkeypatch.setenv(options.TOKEN_ENV, "")
    assert options.api_token(_conf([])) is None


def test_insecure_flag():
    assert _conf([]).lag_insecure is False
    assert _conf(["--lag-insecure"]).lag_insecure is True
