"""The cluster over REST: GET /lag/cluster, a switch's master, 409 concurrent_change, the
cluster's metrics, and ``LagClient.cluster`` / ``lagctl cluster`` through the API."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from webob import Request

from clients import cli
from clients.client import Conflict, LagClient
from ryu_lag.config import BondConfig
from tests.rest.conftest import DPID, DPID_S, INSTANCE, INSTANCE_URL, Rig, error_of
from tests.rest.test_metrics import samples, value

SWITCH = f"/lag/{DPID_S}"
BOND0 = f"{SWITCH}/bond0"
OTHER = "ctl-b"
OTHER_URL = "http://127.0.0.1:8081"

# What an instance of a two-instance etcd cluster reports: master of switch 1, standby of switch 2,
# and switch 3 connected to the other instance only.
TWO_INSTANCES: dict[str, Any] = {
    "store": {"url": "etcd://127.0.0.1:2379,127.0.0.1:2381", "kind": "etcd", "healthy": False,
              "error": "no member answered", "requests": 40, "request_seconds": 0.1},
    "election": {"reachable": True, "lease_ttl": 1, "seconds_since_step": 0.12, "steps": 100, "step_seconds": 1.5},
    "instances": [
        {"id": INSTANCE, "url": INSTANCE_URL, "switches": [DPID_S, "0000000000000002"], "masters": [DPID_S]},
        {"id": OTHER, "url": OTHER_URL, "switches": [DPID_S, "0000000000000002"], "masters": ["0000000000000002"]},
    ],
    "switches": [
        {"dpid": DPID_S, "master": INSTANCE, "generation": 123, "role": "master"},
        {"dpid": "0000000000000002", "master": OTHER, "generation": 130, "role": "slave"},
        {"dpid": "0000000000000003", "master": OTHER, "generation": 131, "role": None},
        {"dpid": "0000000000000004", "master": INSTANCE, "generation": 132, "role": "equal"},  # not yet promoted
    ],
    "takeovers": 3,
    "stepdowns": 1,
}


# ---- GET /lag/cluster -----------------------------------------------------------------------
def test_cluster_of_one_instance(rig: Rig):
    status = rig.get("/lag/cluster").json  # Rig.request checks it against the document's Cluster schema
    assert status["instance"] == INSTANCE and status["election"] is None
    assert status["store"]["kind"] == "sqlite" and status["store"]["url"] == f"sqlite:{rig.db}"
    assert status["instances"] == [{"id": INSTANCE, "url": INSTANCE_URL, "switches": [], "masters": []}]
    assert status["switches"] == []
    rig.connect()
    status = rig.get("/lag/cluster").json
    assert status["instances"][0]["masters"] == [DPID_S]
    assert status["switches"] == [{"dpid": DPID_S, "master": INSTANCE, "generation": None, "role": "equal"}]


def test_cluster_answers_the_apps_status(connected: Rig):
    connected.cluster = TWO_INSTANCES
    r = connected.get("/lag/cluster")
    assert r.status_code == 200 and r.json == connected.cluster_status()
    assert connected.request("HEAD", "/lag/cluster").status_code == 200


def test_cluster_is_read_only_and_no_dpid(connected: Rig):
    r = connected.post("/lag/cluster", {"ports": [1]})
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert connected.get("/lag/cluster/bond0").status_code == 404
    assert error_of(connected.get("/lag/clusters"))["code"] == "not_found"


def test_cluster_needs_the_token(tmp_path):
    rig = Rig(tmp_path, token="secret")
    assert rig.get("/lag/cluster", auth=False).status_code == 401
    assert rig.get("/lag/cluster").status_code == 200


# ---- GET /lag/{dpid}: master ---------------------------------------------------------------------
def test_switch_names_its_master(rig: Rig, monkeypatch: pytest.MonkeyPatch):
    rig.post(SWITCH, {"ports": [1, 2]})
    assert rig.get(SWITCH).json["master"] is None  # not connected: no master
    rig.connect()
    assert rig.get(SWITCH).json["master"] == INSTANCE
    monkeypatch.setattr(rig, "master_of", lambda dpid: OTHER if dpid == DPID else None)
    assert rig.get(SWITCH).json["master"] == OTHER


# ---- 409 concurrent_change ------------------------------------------------------------------------
@pytest.fixture
def raced(connected: Rig) -> Rig:
    """bond0 on ports 1-2, then another writer (another instance) adds bond1 to the switch in the store."""
    assert connected.post(SWITCH, {"ports": [1, 2]}).status_code == 201
    connected.store.put_bond(BondConfig.from_dict(DPID, {"ports": [3]}, name="bond1", key=2))
    return connected


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", SWITCH, {"ports": [4]}), ("PUT", BOND0, {"ports": [1, 2, 4]}), ("PUT", f"{SWITCH}/new", {"ports": [4]}),
     ("DELETE", BOND0, None)],
    ids=["post", "put-replace", "put-create", "delete"],
)
def test_a_write_based_on_a_stale_view_is_refused(raced: Rig, method: str, path: str, body: Any):
    before = raced.snapshot()
    r = raced.request(method, path, body)
    assert r.status_code == 409, r.body
    error = error_of(r)
    assert error["code"] == "concurrent_change"
    assert f"switch {DPID_S} changed through another instance" in error["message"]
    assert "nothing was changed" in error["message"] and "retry" in error["message"]
    assert raced.snapshot() == before  # the other writer's bond1 stays, ours is not applied


def test_concurrent_change_is_the_clients_conflict(raced: Rig):
    with pytest.raises(Conflict) as caught:
        client(raced).put_bond(DPID_S, "bond0", [1, 2, 4])
    assert (caught.value.status, caught.value.code) == (409, "concurrent_change")


# ---- /metrics -----------------------------------------------------------------------------------------
def test_metrics_of_one_instance(connected: Rig):
    found = samples(connected)
    assert value(found, "ryu_lag_switch_master", dpid=DPID_S) == 1
    assert value(found, "ryu_lag_cluster_instances") == 1
    assert value(found, "ryu_lag_cluster_takeovers_total") == 0
    assert value(found, "ryu_lag_cluster_stepdowns_total") == 0
    assert value(found, "ryu_lag_store_healthy") == 1
    assert value(found, "ryu_lag_store_requests_total") == 0
    assert value(found, "ryu_lag_store_request_seconds_total") == 0
    assert not [name for name, _ in found if name.startswith("ryu_lag_election_")]


def test_metrics_of_a_cluster(connected: Rig):
    connected.cluster = TWO_INSTANCES
    found = samples(connected)
    assert value(found, "ryu_lag_switch_master", dpid=DPID_S) == 1
    assert value(found, "ryu_lag_switch_master", dpid="0000000000000002") == 0
    assert value(found, "ryu_lag_switch_master", dpid="0000000000000003") == 0
    assert value(found, "ryu_lag_switch_master", dpid="0000000000000004") == 0  # EQUAL counts only alone
    assert value(found, "ryu_lag_cluster_instances") == 2
    assert value(found, "ryu_lag_cluster_takeovers_total") == 3
    assert value(found, "ryu_lag_cluster_stepdowns_total") == 1
    assert value(found, "ryu_lag_store_healthy") == 0
    assert value(found, "ryu_lag_store_requests_total") == 40
    assert value(found, "ryu_lag_store_request_seconds_total") == pytest.approx(0.1)
    assert value(found, "ryu_lag_election_reachable") == 1
    connected.cluster = {**TWO_INSTANCES, "election": {**TWO_INSTANCES["election"], "reachable": False},
                         "switches": [{"dpid": DPID_S, "master": OTHER, "generation": 140, "role": "slave"}]}
    found = samples(connected)
    assert value(found, "ryu_lag_election_reachable") == 0
    assert value(found, "ryu_lag_switch_master", dpid=DPID_S) == 0
    assert value(found, "ryu_lag_switch_master", dpid="0000000000000002") is None


# ---- LagClient.cluster and lagctl cluster, through the API ----------------------------------------------
class WsgiAdapter(BaseAdapter):
    """A requests transport that hands each request to a WSGI application (no socket)."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        parts = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        req = Request.blank(
            f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
            method=request.method, headers=dict(request.headers), body=body,
        )
        answer = req.get_response(self.app)
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = answer.body
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def client(rig: Rig) -> LagClient:
    session = requests.Session()
    session.mount("http://", WsgiAdapter(rig.wsgi))
    return LagClient("http://127.0.0.1:8080", token=rig.token, session=session)


def test_client_cluster(connected: Rig):
    assert client(connected).cluster() == connected.cluster_status()


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_lagctl_cluster(connected: Rig, as_json: bool):
    connected.cluster = TWO_INSTANCES
    out = io.StringIO()
    cli.run(argparse.Namespace(command="cluster", json=as_json), client(connected), out)
    if as_json:
        assert json.loads(out.getvalue()) == connected.cluster_status()
    else:
        assert out.getvalue() == cli.render_cluster(connected.cluster_status()) + "\n"
        assert f"{DPID_S}  {INSTANCE}  123" in out.getvalue()
    assert cli.parser().parse_args(["cluster"]).command == "cluster"
