"""Bond routes: POST /lag/{dpid}, GET/PUT/DELETE /lag/{dpid}/{bond}, and member status."""

from __future__ import annotations

import contextlib
import json
import sqlite3

from ryu_lag.lacp import Rate
from ryu_lag.openflow import FlowCommand, FlowMod, GroupCommand, GroupMod, GroupType, Match
from ryu_lag.service import PortDesc
from ryu_lag.switching import BOND_GROUP_MIN
from tests.rest.conftest import DPID, DPID_S, PARTNER_KEY, PARTNER_SYSTEM, SWITCH_SYSTEM, Rig, error_of

BOND0 = f"/lag/{DPID_S}/bond0"


def group_mods(rig: Rig, since: int = 0) -> list[GroupMod]:
    """The bonds' (SELECT) group edits sent since message ``since``; the flood groups left out."""
    return [m for _, m in rig.messages()[since:] if isinstance(m, GroupMod) and m.group_type is GroupType.SELECT]


def member(bond: dict, port: int) -> dict:
    return next(m for m in bond["members"] if m["port"] == port)


def stored(rig: Rig) -> dict[str, dict]:
    """The bond configurations another connection reads from the state file (committed ones)."""
    with contextlib.closing(sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True)) as db:
        return {name: json.loads(config) for name, config in db.execute("SELECT name, config FROM bonds")}


def test_post_minimal_creates_with_defaults(connected: Rig):
    mark = len(connected.messages())
    r = connected.post(f"/lag/{DPID_S}", {"ports": [2, 1]})
    assert r.status_code == 201
    assert r.headers["Location"].endswith(BOND0)
    bond = r.json
    assert bond["dpid"] == DPID_S and bond["name"] == "bond0"
    assert bond["config"] == {
        "name": "bond0", "ports": [1, 2], "key": 1, "mode": "active", "rate": "slow",
        "system_priority": 32768, "port_priority": 32768, "min_links": 1, "system": None, "bfd": None,
    }
    assert bond["applied"] and bond["group_id"] == BOND_GROUP_MIN and bond["actor_system"] == SWITCH_SYSTEM
    assert [m["port"] for m in bond["members"]] == [1, 2]
    assert stored(connected)["bond0"]["ports"] == [1, 2]  # committed before the answer
    assert [g.command for g in group_mods(connected, mark)] == [GroupCommand.ADD]


def test_post_generates_name_and_key_and_takes_every_field(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1]})
    r = connected.post(f"/lag/{DPID_S}", {"ports": [2]})
    assert (r.json["name"], r.json["config"]["key"]) == ("bond1", 2)
    body = {
        "name": "uplink", "ports": [3, 4], "mode": "passive", "rate": "fast", "key": 42,
        "system_priority": 100, "port_priority": 200, "min_links": 2, "system": "02:AA:00:00:00:01",
    }
    r = connected.post(f"/lag/{DPID_S}", body)
    assert r.status_code == 201 and r.headers["Location"].endswith(f"/lag/{DPID_S}/uplink")
    assert r.json["config"] == {**body, "system": "02:aa:00:00:00:01", "bfd": None}
    assert r.json["actor_system"] == "02:aa:00:00:00:01"
    actor = member(r.json, 3)["actor"]
    assert (actor["system_priority"], actor["key"], actor["port_priority"]) == (100, 42, 200)
    assert actor["state"]["activity"] is False and actor["state"]["timeout"] is True


def test_post_to_a_switch_not_connected_yet_applies_on_connect(rig: Rig):
    r = rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    assert r.status_code == 201
    assert not r.json["applied"] and r.json["group_id"] is None
    assert {m["reason"] for m in r.json["members"]} == {"switch not connected"}
    assert rig.get(BOND0).json["applied"] is False
    rig.connect()
    bond = rig.get(BOND0).json
    assert bond["applied"] and bond["group_id"] == BOND_GROUP_MIN
    assert member(bond, 1)["link"] == "up"


def test_get_bond(connected: Rig):
    created = connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]}).json
    r = connected.get(BOND0)
    assert r.status_code == 200 and r.json == created


def test_put_creates_then_same_body_changes_nothing(connected: Rig):
    r = connected.put(BOND0, {"ports": [1, 2], "rate": "fast"})
    assert r.status_code == 201 and r.headers["Location"].endswith(BOND0)
    before = connected.snapshot()
    again = connected.put(BOND0, {"ports": [1, 2], "rate": "fast"})
    assert again.status_code == 200 and again.json["config"] == r.json["config"]
    assert connected.snapshot() == before  # nothing sent, nothing renegotiates
    with_name = connected.put(BOND0, {"name": "bond0", "ports": [1, 2], "rate": "fast", "key": 1})
    assert with_name.status_code == 200 and connected.snapshot() == before


def test_put_replaces_and_keeps_the_key(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [3]})  # bond0, key 1
    connected.put(f"/lag/{DPID_S}/trunk", {"ports": [1, 2]})  # key 2
    mark = len(connected.messages())
    r = connected.put(f"/lag/{DPID_S}/trunk", {"ports": [1, 2, 4], "min_links": 2})
    assert r.status_code == 200 and "Location" not in r.headers
    assert r.json["config"]["key"] == 2 and r.json["config"]["ports"] == [1, 2, 4]
    assert stored(connected)["trunk"]["min_links"] == 2
    assert group_mods(connected, mark) == []  # changed in place: the group is not rebuilt


def test_delete_bond_frees_its_ports(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    mark = len(connected.messages())
    r = connected.delete(BOND0)
    assert r.status_code == 204 and r.body == b"" and "Content-Type" not in r.headers
    assert "bond0" not in stored(connected)
    sent = [m for _, m in connected.messages()[mark:]]
    assert GroupMod(GroupCommand.DELETE, BOND_GROUP_MIN) in sent
    # the members' flows change: plain-port ingress rules replace the bond's
    assert any(isinstance(m, FlowMod) and m.match == Match(in_port=1) and m.command is FlowCommand.ADD
               and m.write_metadata == 1 for m in sent)
    switch = connected.get(f"/lag/{DPID_S}").json
    assert switch["bonds"] == [] and {p["port"]: p["bond"] for p in switch["ports"]} == {1: None, 2: None, 3: None, 4: None}
    assert connected.service.switches[DPID].switch.plain_ports() == {1, 2, 3, 4}
    assert error_of(connected.delete(BOND0))["code"] == "unknown_bond"


def test_delete_bond_of_a_switch_not_connected(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    assert rig.delete(BOND0).status_code == 204
    assert rig.get("/lag").json == {"switches": []}


def test_members_before_any_lacpdu(connected: Rig):
    bond = connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]}).json
    m = member(bond, 1)
    assert m["link"] == "up" and m["mux"] == "detached" and m["selection"] == "unselected"
    assert m["enabled"] is False and m["lacp_timeout"] == 0 and m["since_last_lacpdu"] is None
    assert m["rx_state"] == "expired" and m["reason"] == "waiting for first LACPDU"
    assert m["actor"]["system"] == SWITCH_SYSTEM and m["actor"]["port"] == 1
    assert m["counters"]["lacpdus_tx"] >= 1 and m["counters"]["lacpdus_rx"] == 0


def test_members_distributing_with_the_partner(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.attach_partner([1, 2])
    connected.run(3.0)
    bond = connected.get(BOND0).json
    assert bond["up"] and bond["distributing"] == 2
    assert bond["partner"] == {"system": PARTNER_SYSTEM, "system_priority": 32768, "key": PARTNER_KEY}
    for port in (1, 2):
        m = member(bond, port)
        assert (m["mux"], m["selection"], m["enabled"], m["reason"]) == ("distributing", "selected", True, "distributing")
        assert m["lacp_timeout"] == 90  # our rate is slow: we wait 90 s
        assert 0 <= m["since_last_lacpdu"] <= 1.0  # the partner asked for fast: it sends every second
        assert m["partner"]["system"] == PARTNER_SYSTEM and m["partner"]["key"] == PARTNER_KEY
        assert m["partner"]["port"] == port
        assert m["partner"]["state"] == {
            "activity": True, "timeout": True, "aggregation": True, "synchronization": True,
            "collecting": True, "distributing": True, "defaulted": False, "expired": False,
        }
        assert m["actor"]["state"]["distributing"] and m["actor"]["state"]["synchronization"]
        assert m["counters"]["lacpdus_rx"] > 0 and m["counters"]["lacpdus_tx"] > 0
    connected.clock.now += 0.5  # seconds since the last LACPDU follow the clock
    assert member(connected.get(BOND0).json, 1)["since_last_lacpdu"] >= 0.5


def test_fast_rate_timeout_and_expiry_counter(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2], "rate": "fast"})
    partner = connected.attach_partner([1, 2], rate=Rate.SLOW)
    connected.run(3.0)
    assert member(connected.get(BOND0).json, 1)["lacp_timeout"] == 3
    partner.silent = True
    connected.run(4.0)
    m = member(connected.get(BOND0).json, 1)
    assert m["counters"]["expirations"] == 1 and m["enabled"] is False


def test_link_down_and_standby_below_min_links(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2], "min_links": 2})
    connected.attach_partner([1, 2])
    connected.run(3.0)
    assert connected.get(BOND0).json["up"]
    connected.execute(connected.service.port_changed(DPID, PortDesc(2, "02:00:00:00:01:02", False), connected.clock()))
    connected.run(1.0)
    bond = connected.get(BOND0).json
    assert not bond["up"]
    assert member(bond, 2)["link"] == "down" and member(bond, 2)["reason"] == "link down"
    m1 = member(bond, 1)
    assert (m1["mux"], m1["selection"], m1["enabled"]) == ("waiting", "standby", False)
    assert m1["reason"].startswith("bond below min_links")


def test_bad_lacpdu_is_counted(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    truncated = bytes.fromhex("0180c2000002") + bytes.fromhex("020000000099") + b"\x88\x09\x01\x01" + bytes(20)
    connected.execute(connected.service.packet_in(DPID, 1, truncated, connected.clock()))
    assert member(connected.get(BOND0).json, 1)["counters"]["bad_rx"] == 1


def test_head_answers_without_body(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    r = connected.request("HEAD", BOND0)
    assert r.status_code == 200 and r.body == b""
