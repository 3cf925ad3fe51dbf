"""BFD over REST: a bond's ``bfd`` stored and shown, bad fields refused by name, the member's BFD status.

Every response is checked against the OpenAPI document by the rig.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3

import pytest

from clients.cli import bfd_setting, main, parser, render_bond
from clients.client import _bond_body
from ryu_lag.bfd import BfdSession, BondBfd, Discriminators, Encapsulation, encode_frame, source_port
from ryu_lag.bfd.packet import OVS_UDP_PORT
from tests.rest.conftest import DPID, DPID_S, Rig, error_of, port_mac

BOND0 = f"/lag/{DPID_S}/bond0"
DEFAULTS = {
    "min_tx_ms": 100, "min_rx_ms": 100, "multiplier": 3, "encapsulation": "ovs",
    "dst_mac": "00:23:20:00:00:01", "src_ip": "169.254.1.1", "dst_ip": "169.254.1.0",
}


def stored(rig: Rig) -> dict[str, dict]:
    with contextlib.closing(sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True)) as db:
        return {name: json.loads(config) for name, config in db.execute("SELECT name, config FROM bonds")}


def test_put_with_bfd_is_stored_and_shown(connected: Rig):
    r = connected.put(BOND0, {"ports": [1, 2], "rate": "fast", "bfd": {"min_tx_ms": 50}})
    assert r.status_code == 201
    assert r.json["config"]["bfd"] == {**DEFAULTS, "min_tx_ms": 50}
    assert stored(connected)["bond0"]["bfd"] == {**DEFAULTS, "min_tx_ms": 50}
    assert connected.get(BOND0).json["config"]["bfd"] == {**DEFAULTS, "min_tx_ms": 50}
    again = connected.put(BOND0, {"ports": [1, 2], "rate": "fast", "bfd": {"min_tx_ms": 50, "multiplier": 3}})
    assert again.status_code == 200 and again.json["config"] == r.json["config"]
    # The config view is a PUT body that changes nothing.
    mark = len(connected.messages())
    assert connected.put(BOND0, r.json["config"]).status_code == 200
    assert len(connected.messages()) == mark


def test_bfd_off_by_default_and_turned_off_with_null(connected: Rig):
    r = connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    assert r.json["config"]["bfd"] is None and all(m["bfd"] is None for m in r.json["members"])
    connected.put(BOND0, {"ports": [1, 2], "bfd": {}})
    assert stored(connected)["bond0"]["bfd"] == DEFAULTS
    r = connected.put(BOND0, {"ports": [1, 2], "bfd": None})
    assert r.status_code == 200 and r.json["config"]["bfd"] is None
    assert stored(connected)["bond0"]["bfd"] is None


def test_shown_for_a_switch_not_connected(rig: Rig):
    r = rig.put(BOND0, {"ports": [1], "bfd": {"encapsulation": "rfc7130"}})
    assert r.status_code == 201 and not r.json["applied"]
    assert r.json["config"]["bfd"]["dst_mac"] == "01:00:5e:90:00:01"
    assert r.json["members"][0]["bfd"] is None


@pytest.mark.parametrize(
    ("bfd", "field"),
    [
        (True, "bfd"),
        ({"min_tx_ms": 5}, "bfd.min_tx_ms"),
        ({"min_rx_ms": 20000}, "bfd.min_rx_ms"),
        ({"multiplier": 0}, "bfd.multiplier"),
        ({"encapsulation": "gre"}, "bfd.encapsulation"),
        ({"dst_mac": "nope"}, "bfd.dst_mac"),
        ({"src_ip": "1.2.3"}, "bfd.src_ip"),
        ({"dst_ip": 7}, "bfd.dst_ip"),
        ({"interval": 100}, "bfd.interval"),
    ],
)
def test_bad_bfd_fields_are_refused_by_name_and_change_nothing(connected: Rig, bfd, field):
    connected.put(BOND0, {"ports": [1, 2], "bfd": {}})
    before = connected.snapshot()
    for method, path in (("PUT", BOND0), ("POST", f"/lag/{DPID_S}")):
        r = connected.request(method, path, {"ports": [1, 2] if method == "PUT" else [3], "bfd": bfd})
        assert r.status_code == 400
        error = error_of(r)
        assert error["code"] == "invalid_field" and error["field"] == field
        assert error["message"].startswith(f"{field}: ")
    assert connected.snapshot() == before


def partner_frame(packet) -> bytes:
    return encode_frame(Encapsulation.ovs(), "02:00:00:00:00:99", source_port(900), packet)


def bond_with_status(connected: Rig) -> dict:
    """``GET`` of a bond whose runtime holds a BondBfd (as the service will): member 1 Up, member 2 not."""
    connected.put(BOND0, {"ports": [1, 2], "bfd": {}})
    bond = connected.service.switches[DPID].bonds["bond0"]
    config = connected.service.configs[DPID]["bond0"].bfd
    assert config is not None
    bfd = BondBfd(config, [1, 2], Discriminators(40), jitter=random.Random(1).random)
    bond.bfd = bfd  # what the service will hold; the view reads getattr(bond, "bfd", None)
    partner = BfdSession(900, 100_000, 100_000, 3, jitter=random.Random(2).random)  # cabled to member 1
    now = connected.clock()
    to_partner = [frame for port in (1, 2) for p, frame in bfd.set_link(port, True, now, port_mac(port)).transmit if p == 1]
    end = now + 3.0
    while now < end:
        to_ours = [packet for frame in to_partner for packet in partner.receive_frame(frame, OVS_UDP_PORT, now).transmit]
        to_ours += partner.tick(now).transmit
        to_partner = []
        for packet in to_ours:
            to_partner += [f for p, f in bfd.receive_frame(1, partner_frame(packet), now).transmit if p == 1]
        to_partner += [f for p, f in bfd.tick(now).transmit if p == 1]
        now = max(now, min(bfd.deadline, partner.deadline))
    bfd.receive_frame(1, b"garbage", now)
    last_rx = bfd.members[1].session.counters.last_rx
    connected.clock.now = last_rx + 0.25
    return connected.get(BOND0).json


def test_member_bfd_status(connected: Rig):
    members = {m["port"]: m["bfd"] for m in bond_with_status(connected)["members"]}
    up, never = members[1], members[2]
    assert up["state"] == "up" and up["remote_state"] == "up"
    assert (up["local_discriminator"], up["remote_discriminator"]) == (40, 900)
    assert up["local_diag"] == "none" and up["gating"] and up["gate_open"]
    assert up["tx_interval_ms"] == up["rx_interval_ms"] == 100 and up["detection_time_ms"] == 300
    assert up["remote_multiplier"] == 3 and up["since_last_packet"] == 0.25
    assert up["counters"]["packets_rx"] >= 10 and up["counters"]["packets_tx"] >= 10
    assert up["counters"]["bad_rx"] == 1 and up["last_bad_reason"] and up["counters"]["state_changes"] >= 1
    assert up["reason"] == "BFD Up: the member carries traffic while LACP distributes"
    assert never["state"] == "down" and never["remote_discriminator"] == 0 and never["detection_time_ms"] is None
    assert not never["gating"] and never["gate_open"] and never["since_last_packet"] is None
    assert never["reason"] == (
        "the BFD session never came Up since the link came up: the partner runs no BFD; the member runs on LACP alone"
    )


def test_openapi_documents_bfd(connected: Rig):
    doc = connected.get("/lag/openapi.json").json
    schemas = doc["components"]["schemas"]
    assert set(schemas["BfdInput"]["properties"]) == set(DEFAULTS)
    assert schemas["BfdInput"]["properties"]["min_tx_ms"]["minimum"] == 10
    assert schemas["BfdInput"]["properties"]["multiplier"]["maximum"] == 255
    assert schemas["BondConfig"]["properties"]["bfd"]["nullable"]
    assert "bfd" in schemas["Member"]["required"]


# ---- lagctl and the client ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "bfd", "body"),
    [
        ([], None, None),
        (["--bfd"], {}, DEFAULTS),
        (["--bfd-min-tx", "50", "--bfd-multiplier", "5"], {"min_tx_ms": 50, "multiplier": 5},
         {**DEFAULTS, "min_tx_ms": 50, "multiplier": 5}),
        (["--bfd", "--bfd-min-rx", "300", "--bfd-encapsulation", "rfc7130"],
         {"min_rx_ms": 300, "encapsulation": "rfc7130"},
         {**DEFAULTS, "min_rx_ms": 300, "encapsulation": "rfc7130", "dst_mac": "01:00:5e:90:00:01"}),
        (["--no-bfd"], False, None),
    ],
)
def test_lagctl_bfd_options_make_the_body_the_api_stores(connected: Rig, options, bfd, body):
    args = parser().parse_args(["put", DPID_S, "bond0", "--ports", "1", "2", *options])
    assert bfd_setting(args) == bfd
    request = _bond_body([1, 2], {"rate": None, "bfd": bfd_setting(args)})
    if bfd is None:
        assert "bfd" not in request
    else:
        assert request["bfd"] == (None if bfd is False else bfd)
    connected.put(BOND0, {"ports": [1, 2], "bfd": {"min_tx_ms": 20}})  # on before: every case replaces it
    assert connected.put(BOND0, request).status_code == 200
    assert stored(connected)["bond0"]["bfd"] == body


def test_lagctl_create_takes_the_bfd_options_but_not_no_bfd(capsys):
    args = parser().parse_args(["create", DPID_S, "--ports", "1", "--bfd-min-tx", "30"])
    assert bfd_setting(args) == {"min_tx_ms": 30}
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["create", DPID_S, "--ports", "1", "--no-bfd"])
    assert exc.value.code == 2


@pytest.mark.parametrize("options", [["--no-bfd", "--bfd"], ["--no-bfd", "--bfd-multiplier", "4"]])
def test_lagctl_refuses_no_bfd_with_bfd_options(options, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["put", DPID_S, "bond0", "--ports", "1", *options])
    assert exc.value.code == 2 and "--no-bfd cannot go with" in capsys.readouterr().err


def test_lagctl_show_prints_each_members_bfd(connected: Rig):
    text = render_bond(bond_with_status(connected))
    assert "bfd ovs min_tx 100 ms  min_rx 100 ms  multiplier 3  to 00:23:20:00:00:01 169.254.1.1 -> 169.254.1.0" in text
    rows = {line.split()[0]: line for line in text.splitlines()[-2:]}
    assert rows["1"].split()[1:4] == ["up", "up", "40/900"] and "BFD Up: the member carries traffic" in rows["1"]
    assert rows["2"].split()[1:3] == ["down", "down"] and "the partner runs no BFD" in rows["2"]
    assert "bfd" not in render_bond(connected.put(BOND0, {"ports": [1, 2]}).json)


def test_a_member_bfd_holds_out_is_not_enabled_and_says_why(connected: Rig):
    connected.attach_partner([1, 2])
    connected.put(BOND0, {"ports": [1, 2], "bfd": {}})  # what bond_with_status puts: no change there
    connected.run(5.0)
    assert connected.get(BOND0).json["distributing"] == 2
    bond_with_status(connected)  # member 1's session Up, member 2's never
    bfd = connected.service.switches[DPID].bonds["bond0"].bfd
    last_rx = bfd.members[1].session.counters.last_rx
    connected.clock.now = last_rx + 0.31  # three missed packets: detection time expired
    connected.execute(connected.service.tick(connected.clock.now))
    assert not bfd.gate_open(1)
    bond = connected.get(BOND0).json
    assert bond["distributing"] == 1 and bond["up"]
    held, free = bond["members"]
    assert held["mux"] == "distributing" and not held["enabled"] and not held["bfd"]["gate_open"]
    assert held["reason"] == held["bfd"]["reason"] == (
        "BFD session Down (control detection time expired): the member is out of the bond until BFD is Up again"
    )
    assert free["enabled"] and free["reason"] == "distributing"
