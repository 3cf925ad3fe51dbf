"""Datapath ids over the whole unsigned 64-bit range through the API (SQLite's INTEGER is signed)."""

from __future__ import annotations

import pytest

from ryu_lag.config import format_dpid
from tests.rest.conftest import Rig

EDGE_DPIDS = [0, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("dpid", EDGE_DPIDS, ids=hex)
@pytest.mark.parametrize("connected", [False, True], ids=["configured", "connected"])
def test_bond_lifecycle_at_edge_dpids(tmp_path, dpid: int, connected: bool):
    rig = Rig(tmp_path)
    if connected:
        rig.connect(dpid)
    hex_dpid = format_dpid(dpid)
    r = rig.post(f"/lag/{hex_dpid}", {"ports": [1, 2]})
    assert r.status_code == 201, r.body
    assert r.json["dpid"] == hex_dpid and r.headers["Location"].endswith(f"/lag/{hex_dpid}/bond0")
    assert rig.put(f"/lag/{hex_dpid}/bond0", {"ports": [1, 2, 3]}).status_code == 200
    assert rig.put(f"/lag/{hex_dpid}/bond1", {"ports": [4]}).status_code == 201
    r = rig.get(f"/lag/{hex_dpid}/bond0")
    assert r.status_code == 200 and r.json["config"]["ports"] == [1, 2, 3]
    assert [b["name"] for b in rig.get(f"/lag/{hex_dpid}").json["bonds"]] == ["bond0", "bond1"]
    assert hex_dpid in [s["dpid"] for s in rig.get("/lag").json["switches"]]
    assert rig.get("/metrics").status_code == 200
    assert rig.delete(f"/lag/{hex_dpid}/bond0").status_code == 204
    assert [(c.dpid, c.name) for c in rig.store.load_all()] == [(dpid, "bond1")]
    rig.store.close()
    restarted = Rig(tmp_path)  # a restart loads the bond back at the same dpid
    assert restarted.get(f"/lag/{hex_dpid}/bond1").json["config"]["ports"] == [4]
