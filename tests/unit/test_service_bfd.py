"""BFD on bond members through the service: a member carries traffic while LACP distributes it and,
once its BFD session has come Up, while the session stays Up."""

from __future__ import annotations

import random

from ryu_lag.bfd import BfdConfig, BondBfd, Discriminators, is_bfd_frame
from ryu_lag.config import BondConfig
from ryu_lag.openflow import PacketOut
from ryu_lag.switching import bfd_meter
from tests.unit.test_service import DPID, G, Rig, port

BFD = BfdConfig()


class BfdRig(Rig):
    """The service's rig with a BFD peer on the partner's side of members 1 and 2 (``bfd_cut`` drops both ways)."""

    def __init__(self, tmp_path, *, peer: bool = True) -> None:
        super().__init__(tmp_path)
        self.peer = BondBfd(BFD, [1, 2], Discriminators(500), jitter=random.Random(4).random) if peer else None
        self.bfd_cut: set[int] = set()
        self.sent_bfd = 0

    def connect(self) -> None:
        super().connect()
        if self.peer is not None:
            for p in (1, 2):
                self.to_service(self.peer.set_link(p, True, self.now, f"02:00:00:00:09:0{p}").transmit)

    def apply(self, effects) -> None:
        bfd = [m for _, m in effects.messages if isinstance(m, PacketOut) and is_bfd_frame(m.data, BFD)]
        effects.messages = [(d, m) for d, m in effects.messages if not (isinstance(m, PacketOut) and m in bfd)]
        super().apply(effects)
        self.sent_bfd += len(bfd)
        for msg in bfd:
            if self.peer is not None and msg.port not in self.bfd_cut:
                self.to_service(self.peer.receive_frame(msg.port, msg.data, self.now).transmit)

    def to_service(self, frames) -> None:
        for p, frame in frames:
            if p not in self.bfd_cut:
                self.apply(self.service.packet_in(DPID, p, frame, self.now))

    def run(self, seconds: float, step: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + step, 6)
            self.apply(self.service.tick(self.now))
            self.to_switch(self.partner.tick(self.now))
            if self.peer is not None:
                self.to_service(self.peer.tick(self.now).transmit)


def bfd_bond(**bfd: object) -> BondConfig:
    return BondConfig.from_dict(DPID, {"name": "bond0", "ports": [1, 2], "rate": "fast", "bfd": dict(bfd)}, key=1)


def test_a_silent_bfd_cut_takes_the_member_out_and_mending_brings_it_back(tmp_path):
    rig = BfdRig(tmp_path)
    rig.apply(rig.service.put_bond(bfd_bond(), rig.now))
    rig.connect()
    rig.run(5.0)
    bond = rig.bond()
    assert rig.switch.select_groups() == {G: (1, 2)}
    assert all(bond.bfd.gating(p) for p in (1, 2))
    rig.events.clear()
    rig.bfd_cut.add(1)  # BFD frames lost both ways; LACP still passes (its 3 s would come much later)
    cut_at = rig.now
    while rig.switch.select_groups()[G] != (2,):
        rig.run(0.01)
        assert rig.now - cut_at <= 0.4, "BFD did not take member 1 out within 400 ms"
    assert bond.engine.members[1].distributing  # LACP keeps running: BFD alone holds it out
    assert [(e.port, e.enabled) for e in rig.events] == [(1, False)]
    rig.bfd_cut.clear()
    rig.run(4.0)
    assert rig.switch.select_groups() == {G: (1, 2)}
    assert [(e.port, e.enabled) for e in rig.events] == [(1, False), (1, True)]


def test_without_a_bfd_partner_the_bond_runs_on_lacp_alone(tmp_path):
    rig = BfdRig(tmp_path, peer=False)
    rig.apply(rig.service.put_bond(bfd_bond(), rig.now))
    rig.connect()
    rig.run(5.0)
    bond = rig.bond()
    assert rig.switch.select_groups() == {G: (1, 2)}
    assert rig.sent_bfd > 0 and not any(bond.bfd.gating(p) for p in (1, 2))
    assert "never came Up" in bond.bfd.reason(1) or "no BFD" in bond.bfd.reason(1)


def test_turning_bfd_off_reopens_a_closed_gate(tmp_path):
    rig = BfdRig(tmp_path)
    rig.apply(rig.service.put_bond(bfd_bond(), rig.now))
    rig.connect()
    rig.run(5.0)
    rig.bfd_cut.add(1)
    rig.run(0.5)
    assert rig.switch.select_groups() == {G: (2,)}
    rig.apply(rig.service.put_bond(BondConfig.from_dict(DPID, {"name": "bond0", "ports": [1, 2], "rate": "fast"}, key=1), rig.now))
    assert rig.bond().bfd is None
    assert rig.switch.select_groups() == {G: (1, 2)}


def test_a_member_link_down_stops_its_bfd_session_only(tmp_path):
    rig = BfdRig(tmp_path)
    rig.apply(rig.service.put_bond(bfd_bond(), rig.now))
    rig.connect()
    rig.run(5.0)
    rig.switch.live_ports.discard(2)
    rig.wire_up[2] = False
    rig.bfd_cut.add(2)
    rig.apply(rig.service.port_changed(DPID, port(2, up=False), rig.now))
    rig.run(2.0)
    bond = rig.bond()
    assert rig.switch.select_groups() == {G: (1,)}
    assert bond.bfd.gate_open(1) and bond.bfd.gating(1) and not bond.bfd.gating(2)


def test_members_punt_bfd_packets_through_their_own_meter_whether_collecting_or_not(tmp_path):
    rig = BfdRig(tmp_path)
    rig.apply(rig.service.put_bond(bfd_bond(), rig.now))
    rig.connect()
    bfd_frame = dict(eth_dst=BFD.dst_mac, eth_type=0x0800)
    assert rig.switch.forward(1, "02:00:00:00:09:01", **bfd_frame).controller  # before LACP lets it collect
    rig.run(5.0)
    result = rig.switch.forward(1, "02:00:00:00:09:01", **bfd_frame)
    assert result.controller and result.outputs == frozenset()  # to us only: never learned, never flooded
    assert {bfd_meter(1), bfd_meter(2)} <= set(rig.switch.meters)
    rig.apply(rig.service.put_bond(BondConfig.from_dict(DPID, {"name": "bond0", "ports": [1, 2], "rate": "fast"}, key=1), rig.now))
    assert not {bfd_meter(1), bfd_meter(2)} & set(rig.switch.meters)
    assert rig.switch.forward(1, "02:00:00:00:09:01", **bfd_frame).outputs  # BFD off: forwarded as any frame


def test_a_closed_gate_that_leaves_the_bond_below_min_links_puts_the_other_member_on_standby(tmp_path):
    rig = BfdRig(tmp_path)
    config = {"name": "bond0", "ports": [1, 2], "rate": "fast", "min_links": 2, "bfd": {}}
    rig.apply(rig.service.put_bond(BondConfig.from_dict(DPID, config, key=1), rig.now))
    rig.connect()
    rig.run(5.0)
    bond = rig.bond()
    assert rig.switch.select_groups() == {G: (1, 2)} and all(bond.bfd.gating(p) for p in (1, 2))
    rig.events.clear()
    rig.bfd_cut.add(1)
    rig.run(0.5)
    assert not bond.bfd.gate_open(1)
    assert rig.switch.select_groups() == {G: ()}  # member 2 alone is below min_links: out too
    assert sorted((e.port, e.enabled) for e in rig.events) == [(1, False), (2, False)]
    assert bond.engine.members[2].standby and not rig.partner.members[2].collecting  # its Sync off: the partner let go
    assert not bond.engine.is_up() and bond.engine.members[1].distributing  # LACP runs on under the closed gate
    rig.bfd_cut.clear()
    rig.run(4.0)
    assert rig.switch.select_groups() == {G: (1, 2)} and bond.engine.is_up()
    assert sorted((e.port, e.enabled) for e in rig.events[2:]) == [(1, True), (2, True)]
