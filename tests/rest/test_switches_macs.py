"""GET /lag, GET /lag/{dpid}, and learned MACs: GET and DELETE /lag/{dpid}/macs."""

from __future__ import annotations

import pytest

from ryu_lag.openflow import FlowCommand, FlowMod, Table
from ryu_lag.switching import BOND_GROUP_MIN, bond_logical
from tests.rest.conftest import DPID, DPID_S, SWITCH_SYSTEM, Rig, error_of, port_mac

MACS = f"/lag/{DPID_S}/macs"
H1, H2, H3, H4 = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03", "02:00:00:00:0a:04"


def test_list_switches(rig: Rig):
    assert rig.get("/lag").json == {"switches": []}
    rig.connect()
    rig.post("/lag/00000000000000ab", {"ports": [1]})  # bonds for a switch not connected yet
    assert rig.get("/lag").json == {
        "switches": [
            {"dpid": DPID_S, "connected": True, "bond_count": 0},
            {"dpid": "00000000000000ab", "connected": False, "bond_count": 1},
        ]
    }
    rig.execute(rig.service.switch_disconnected(DPID))
    assert rig.get("/lag").json == {"switches": [{"dpid": "00000000000000ab", "connected": False, "bond_count": 1}]}


def test_get_switch(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    switch = connected.get(f"/lag/{DPID_S}").json
    assert (switch["dpid"], switch["connected"], switch["system"], switch["bond_count"]) == (DPID_S, True, SWITCH_SYSTEM, 1)
    assert switch["ports"] == [
        {"port": p, "mac": port_mac(p), "up": True, "bond": "bond0" if p in (1, 2) else None} for p in (1, 2, 3, 4)
    ]
    assert [b["name"] for b in switch["bonds"]] == ["bond0"]
    assert switch["bonds"][0]["members"][0]["link"] == "up"


def test_get_switch_not_connected_with_bonds(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    switch = rig.get(f"/lag/{DPID_S}").json
    assert (switch["connected"], switch["system"], switch["ports"]) == (False, None, [])
    assert switch["bonds"][0]["applied"] is False


def test_unknown_switch(rig: Rig):
    for path in (f"/lag/{DPID_S}", MACS, f"/lag/{DPID_S}/bond0"):
        r = rig.get(path)
        assert r.status_code == 404 and error_of(r)["code"] == "unknown_switch"
    assert error_of(rig.delete(MACS))["code"] == "unknown_switch"


@pytest.fixture
def learned(connected: Rig) -> Rig:
    """bond0 on ports 1-2 distributing with a partner; H1, H2 learned on it; H3 on port 3, H4 on port 4."""
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.attach_partner([1, 2])
    connected.run(3.0)
    connected.learn(1, H1)
    connected.learn(2, H2)
    connected.learn(3, H3)
    connected.learn(4, H4)
    return connected


def test_list_macs(learned: Rig):
    assert learned.get(MACS).json == {
        "dpid": DPID_S,
        "macs": [
            {"mac": H1, "port": None, "bond": "bond0"},
            {"mac": H2, "port": None, "bond": "bond0"},
            {"mac": H3, "port": 3, "bond": None},
            {"mac": H4, "port": 4, "bond": None},
        ],
    }
    assert [m["mac"] for m in learned.get(MACS + "?bond=bond0").json["macs"]] == [H1, H2]
    assert [m["mac"] for m in learned.get(MACS + "?port=3").json["macs"]] == [H3]


def test_list_macs_of_a_switch_not_connected(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    assert rig.get(MACS).json == {"dpid": DPID_S, "macs": []}
    assert rig.get(MACS + "?bond=bond0").json["macs"] == []


def learned_deletes(rig: Rig, since: int) -> list[FlowMod]:
    return [
        m for _, m in rig.messages()[since:]
        if isinstance(m, FlowMod) and m.command is FlowCommand.DELETE and m.table in (Table.ETH_SRC, Table.ETH_DST)
    ]


def test_flush_all(learned: Rig):
    mark = len(learned.messages())
    r = learned.delete(MACS)
    assert r.status_code == 200 and r.json == {"dpid": DPID_S, "flushed": 4}
    assert learned.get(MACS).json["macs"] == []
    assert {m.table for m in learned_deletes(learned, mark)} == {Table.ETH_SRC, Table.ETH_DST}


def test_flush_one_bond(learned: Rig):
    mark = len(learned.messages())
    assert learned.delete(MACS + "?bond=bond0").json["flushed"] == 2
    assert [m["mac"] for m in learned.get(MACS).json["macs"]] == [H3, H4]
    cookies = {m.cookie & 0x1FFFFFFFF for m in learned_deletes(learned, mark)}
    assert cookies == {bond_logical(BOND_GROUP_MIN)}  # the bond's logical port only


def test_flush_one_port(learned: Rig):
    assert learned.delete(MACS + "?port=3").json["flushed"] == 1
    assert [m["mac"] for m in learned.get(MACS).json["macs"]] == [H1, H2, H4]


def test_flush_on_a_switch_not_connected(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    assert rig.delete(MACS).json == {"dpid": DPID_S, "flushed": 0}
    assert rig.delete(MACS + "?bond=bond0").json["flushed"] == 0


@pytest.mark.parametrize(
    "query, status, code",
    [
        ("?bond=nope", 404, "unknown_bond"),
        ("?port=abc", 400, "invalid_field"),
        ("?port=%C2%B2", 400, "invalid_field"),  # "²": isdigit() but not int()
        ("?port=0", 400, "invalid_field"),
        ("?port=1", 400, "invalid_field"),  # a bond member: MACs are learned on its bond
        ("?port=99", 422, "unknown_port"),
        ("?vlan=1", 400, "invalid_field"),
        ("?bond=bond0&port=3", 400, "invalid_field"),
        ("?port=3&port=4", 400, "invalid_field"),
    ],
)
def test_mac_filter_errors(learned: Rig, query: str, status: int, code: str):
    for method in ("GET", "DELETE"):
        before = learned.snapshot()
        r = learned.request(method, MACS + query)
        assert r.status_code == status and error_of(r)["code"] == code, r.json
        assert learned.snapshot() == before
