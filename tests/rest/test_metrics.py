"""GET /metrics: Prometheus text with LACP and BFD state, bonds, switches and REST requests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ryu_lag.bfd import BfdSession, ControlPacket, Encapsulation, State, encode_frame, is_bfd_frame, source_port
from ryu_lag.bfd.packet import OVS_UDP_PORT
from ryu_lag.openflow import PacketOut
from tests.rest.conftest import DPID, DPID_S, Rig

BOND = {"dpid": DPID_S, "bond": "bond0"}


def samples(rig: Rig) -> dict[tuple[str, frozenset], float]:
    r = rig.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.body.decode())
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_lacp_state_and_counters(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.attach_partner([1, 2])
    connected.run(3.0)
    found = samples(connected)
    assert value(found, "ryu_lag_switches_connected") == 1
    assert value(found, "ryu_lag_switch_connected", dpid=DPID_S) == 1
    assert value(found, "ryu_lag_bond_distributing_members", **BOND) == 2
    assert value(found, "ryu_lag_bond_members", **BOND) == 2
    assert value(found, "ryu_lag_bond_up", **BOND) == 1
    member = {**BOND, "port": "1"}
    assert value(found, "ryu_lag_member_mux_state", **member, state="distributing") == 1
    assert value(found, "ryu_lag_member_mux_state", **member, state="detached") == 0
    assert value(found, "ryu_lag_member_selection", **member, selection="selected") == 1
    assert value(found, "ryu_lag_member_enabled", **member) == 1
    assert value(found, "ryu_lag_member_link_up", **member) == 1
    assert value(found, "ryu_lag_member_lacp_timeout_seconds", **member) == 90
    assert value(found, "ryu_lag_member_actor_state", **member) == 0x3D  # active, long timeout, fully up
    assert value(found, "ryu_lag_member_partner_state", **member) == 0x3F
    assert value(found, "ryu_lag_member_lacpdus_received_total", **member) > 0
    assert value(found, "ryu_lag_member_lacpdus_sent_total", **member) > 0
    assert value(found, "ryu_lag_member_bad_lacpdus_received_total", **member) == 0
    assert value(found, "ryu_lag_member_expirations_total", **member) == 0


def test_bonds_of_a_switch_not_connected(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    found = samples(rig)
    assert value(found, "ryu_lag_switch_connected", dpid=DPID_S) == 0
    assert value(found, "ryu_lag_bond_distributing_members", **BOND) == 0
    assert not any(name.startswith("ryu_lag_member_") for name, _ in found)


def test_switch_disconnect(connected: Rig):
    connected.execute(connected.service.switch_disconnected(DPID))
    assert value(samples(connected), "ryu_lag_switches_connected") == 0


def test_rest_requests_by_route_and_status(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.get(f"/lag/{DPID_S}/bond0")
    connected.get(f"/lag/{DPID_S}/nope")
    connected.request("PATCH", f"/lag/{DPID_S}/bond0")
    connected.get("/lag/1/2/3")
    found = samples(connected)
    name = "ryu_lag_rest_requests_total"
    assert value(found, name, route="/lag/{dpid}", method="POST", status="201") == 1
    assert value(found, name, route="/lag/{dpid}", method="POST", status="409") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="GET", status="200") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="GET", status="404") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="PATCH", status="405") == 1
    assert value(found, name, route="unmatched", method="GET", status="400") == 1


def test_made_up_methods_share_one_label(connected: Rig):
    for method in ("FOO", "BAR", "BAZ"):
        connected.request(method, f"/lag/{DPID_S}")
    found = samples(connected)
    assert value(found, "ryu_lag_rest_requests_total", route="/lag/{dpid}", method="other", status="405") == 3
    assert value(found, "ryu_lag_rest_requests_total", route="/lag/{dpid}", method="FOO", status="405") is None


def test_each_app_has_its_own_registry(tmp_path: Path):
    a, b = Rig(tmp_path / "a"), Rig(tmp_path / "b")
    a.get("/lag")
    a.get("/lag")
    name = "ryu_lag_rest_requests_total"
    assert value(samples(a), name, route="/lag", method="GET", status="200") == 2
    assert value(samples(b), name, route="/lag", method="GET", status="200") is None


class BfdPartner:
    """The partner's BFD session on one member port, answering the packet-outs the rig recorded."""

    def __init__(self, rig: Rig, port: int) -> None:
        self.rig = rig
        self.port = port
        self.session = BfdSession(900, 100_000, 100_000, 3, jitter=random.Random(2).random)
        self.silent = False
        self._read = len(rig.effects)

    def exchange(self, now: float) -> None:
        """Read our new packet-outs to its port, then send what its session says to."""
        config = self.rig.service.configs[DPID]["bond0"].bfd
        assert config is not None
        outs = [msg.data for effects in self.rig.effects[self._read:] for dpid, msg in effects.messages
                if dpid == DPID and isinstance(msg, PacketOut) and msg.port == self.port and is_bfd_frame(msg.data, config)]
        self._read = len(self.rig.effects)
        if self.silent:
            return
        packets = [p for frame in outs for p in self.session.receive_frame(frame, OVS_UDP_PORT, now).transmit]
        for packet in packets + self.session.tick(now).transmit:
            self.send(packet, now)

    def send(self, packet: ControlPacket, now: float) -> None:
        frame = encode_frame(Encapsulation.ovs(), "02:00:00:00:00:99", source_port(900), packet)
        self.rig.execute(self.rig.service.packet_in(DPID, self.port, frame, now))


def run_with_bfd(rig: Rig, partner: BfdPartner, seconds: float, step: float = 0.01) -> None:
    """Advance the clock in BFD-sized steps: the service, the LACP partner and the BFD partner."""
    end = rig.clock.now + seconds
    while rig.clock.now < end - 1e-9:
        rig.clock.now = round(rig.clock.now + step, 6)
        rig.execute(rig.service.tick(rig.clock()))
        if rig.partner is not None:
            rig.partner.send(rig.partner.bond.tick(rig.clock()))
        partner.exchange(rig.clock())


def bfd_member(port: int) -> dict[str, str]:
    return {**BOND, "port": str(port)}


def test_bfd_member_state_gate_and_counters(connected: Rig):
    """Member 1 has a BFD partner, member 2 none; bond1 runs no BFD and has no BFD series."""
    connected.put(f"/lag/{DPID_S}/bond0", {"ports": [1, 2], "bfd": {}})
    connected.put(f"/lag/{DPID_S}/bond1", {"ports": [3, 4]})
    connected.attach_partner([1, 2])
    partner = BfdPartner(connected, 1)
    run_with_bfd(connected, partner, 3.0)
    not_ours = ControlPacket(state=State.UP, detect_mult=3, my_discriminator=900, your_discriminator=12345,
                             desired_min_tx_us=100_000, required_min_rx_us=100_000)
    partner.send(not_ours, connected.clock())  # another session's discriminator: counted as bad
    found = samples(connected)
    up, never = bfd_member(1), bfd_member(2)
    assert value(found, "ryu_lag_member_bfd_state", **up, state="up") == 1
    assert value(found, "ryu_lag_member_bfd_state", **up, state="down") == 0
    assert value(found, "ryu_lag_member_bfd_state", **never, state="down") == 1
    assert {labels for name, labels in found if name == "ryu_lag_member_bfd_state" and ("port", "1") in labels} == {
        frozenset({**up, "state": s}.items()) for s in ("admin_down", "down", "init", "up")
    }
    assert value(found, "ryu_lag_member_bfd_gating", **up) == 1
    assert value(found, "ryu_lag_member_bfd_gating", **never) == 0
    assert value(found, "ryu_lag_member_bfd_gate_open", **up) == 1
    assert value(found, "ryu_lag_member_bfd_gate_open", **never) == 1
    assert value(found, "ryu_lag_member_bfd_detection_time_seconds", **up) == pytest.approx(0.3)
    assert value(found, "ryu_lag_member_bfd_detection_time_seconds", **never) == 0
    assert value(found, "ryu_lag_member_bfd_packets_received_total", **up) >= 20
    assert value(found, "ryu_lag_member_bfd_packets_received_total", **never) == 0
    assert value(found, "ryu_lag_member_bfd_packets_sent_total", **up) >= 20
    assert value(found, "ryu_lag_member_bfd_packets_bad_total", **up) == 1
    assert value(found, "ryu_lag_member_bfd_packets_bad_total", **never) == 0
    changes = value(found, "ryu_lag_member_bfd_state_changes_total", **up)
    assert changes is not None and changes >= 1
    assert value(found, "ryu_lag_member_bfd_state_changes_total", **never) == 0
    assert not [labels for name, labels in found if name.startswith("ryu_lag_member_bfd_") and ("bond", "bond1") in labels]

    partner.silent = True  # a silent cut: detection time expires, the gate closes, LACP still distributes
    run_with_bfd(connected, partner, 0.5)
    found = samples(connected)
    assert value(found, "ryu_lag_member_bfd_state", **up, state="up") == 0
    assert value(found, "ryu_lag_member_bfd_state", **up, state="down") == 1
    assert value(found, "ryu_lag_member_bfd_gating", **up) == 1
    assert value(found, "ryu_lag_member_bfd_gate_open", **up) == 0
    assert value(found, "ryu_lag_member_bfd_state_changes_total", **up) == changes + 1
    assert value(found, "ryu_lag_member_mux_state", **up, state="distributing") == 1


def test_bfd_series_follow_the_bonds_bfd_setting(connected: Rig):
    connected.put(f"/lag/{DPID_S}/bond0", {"ports": [1, 2]})
    assert not any(name.startswith("ryu_lag_member_bfd_") for name, _ in samples(connected))
    connected.put(f"/lag/{DPID_S}/bond0", {"ports": [1, 2], "bfd": {}})
    found = samples(connected)
    assert {labels for name, labels in found if name == "ryu_lag_member_bfd_gating"} == {
        frozenset(bfd_member(port).items()) for port in (1, 2)
    }
    connected.put(f"/lag/{DPID_S}/bond0", {"ports": [1, 2], "bfd": None})
    assert not any(name.startswith("ryu_lag_member_bfd_") for name, _ in samples(connected))
