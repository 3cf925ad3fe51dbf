"""JSON edge cases: a duplicated key is refused; an unknown path under /lag is 404, with a token too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rest.conftest import DPID_S, Rig, error_of

TOKEN = "json-test-token"


@pytest.mark.parametrize(
    "raw, key",
    [
        (b'{"ports": [6], "ports": [7]}', "ports"),
        (b'{"name": "a", "ports": [1], "name": "b"}', "name"),
        (b'{"ports": [1], "system": {"a": 1, "a": 2}}', "a"),  # at any depth, before any field check
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", None])
def test_a_duplicated_key_is_refused(connected: Rig, raw: bytes, key: str, content_type: str | None):
    before = connected.snapshot()
    for method, path in (("POST", f"/lag/{DPID_S}"), ("PUT", f"/lag/{DPID_S}/bond9")):
        r = connected.request(method, path, raw=raw, content_type=content_type)
        assert r.status_code == 400, r.body
        error = error_of(r)
        assert error["code"] == "malformed_json"
        assert f"duplicate key {key!r}" in error["message"]
    assert connected.snapshot() == before


def test_the_same_key_in_different_objects_is_fine(connected: Rig):
    r = connected.post(f"/lag/{DPID_S}", raw=b'[{"a": 1}, {"a": 2}]', content_type="application/json")
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_field"  # a list is no bond; but valid JSON
    r = connected.post(f"/lag/{DPID_S}", raw=b'{"ports": [1, 2], "name": "x"}', content_type="application/json")
    assert r.status_code == 201


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
@pytest.mark.parametrize("path", ["/lag/nowhere", "/lag/nowhere/at/all", "/lag/metrics", "/lag/openapi.yaml",
                                  "/lag/bond0"])
def test_an_unknown_path_is_not_found(tmp_path: Path, token: str | None, path: str):
    rig = Rig(tmp_path, token=token)
    r = rig.get(path)
    assert r.status_code == 404, r.body
    assert error_of(r)["code"] == "not_found"


@pytest.mark.parametrize("path", ["/lag/1", "/lag/0x1/bond0", "/lag/00000000000000AB", "/lag/00:00:00:00:00:00:00:01",
                                  "/lag/zzzzzzzzzzzzzzzz/macs"])
def test_a_path_that_tries_a_dpid_is_invalid_dpid(tmp_path: Path, path: str):
    r = Rig(tmp_path, token=TOKEN).get(path)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_dpid"
