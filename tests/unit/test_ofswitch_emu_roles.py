"""The benchmarks' emulated switch with several controllers keeps OpenFlow 1.3's role rules, as
Open vSwitch does (``tests/integration/test_ovs_roles.py`` shows them on a real bridge): generation
ids fence a deposed master, a slave's writes are refused, and asynchronous messages follow each
connection's SET_ASYNC masks for its role. What it sends parses with Ryu."""

from __future__ import annotations

import struct
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from benchmarks import ofswitch_emu as emu
from ryu_lag import mastership, ofp_wire
from ryu_lag import openflow as of
from tests.unit.test_ofswitch_emu import DPID, FakeTransport, ryu_parse

LACPDU = bytes.fromhex("0180c2000002" "020000000001" "8809" "0101") + bytes(106)


class Peer:
    """One controller's connection to the switch, spoken to with ``ofp_wire`` bytes."""

    def __init__(self, switch: emu.ClusterSwitch, index: int) -> None:
        self.conn = emu.RoleConnection(switch, index)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        switch.attach(self.conn)
        self.transport.data = b""  # its HELLO

    def send(self, msg: of.Message | of.ControlMessage | bytes) -> list[Any]:
        """What the switch answers ``msg`` (or raw bytes) with, parsed by Ryu; what it sent before is dropped."""
        self.transport.data = b""
        self.conn.data_received(msg if isinstance(msg, bytes) else ofp_wire.encode(msg, 9))
        return self.received()

    def received(self) -> list[Any]:
        msgs = ryu_parse(self.transport.data)
        self.transport.data = b""
        return msgs

    def role(self, role: of.Role, generation: int) -> Any:
        (reply,) = self.send(of.RoleRequest(role, generation))
        return reply


def assert_error(msg: Any, error_type: int, code: int) -> None:
    assert isinstance(msg, parser.OFPErrorMsg)
    assert (msg.type, msg.code) == (error_type, code)


def two_peers() -> tuple[emu.ClusterSwitch, Peer, Peer]:
    switch = emu.ClusterSwitch(DPID, [1, 2])
    return switch, Peer(switch, 0), Peer(switch, 1)


def test_generations_fence_a_deposed_master():
    switch, old, new = two_peers()
    outs: list[int] = []
    switch.on_packet_out = lambda port, frame, now: outs.append(port)
    reply = old.role(of.Role.MASTER, 10)
    assert isinstance(reply, parser.OFPRoleReply) and (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_MASTER, 10)
    assert_error(new.role(of.Role.SLAVE, 7), ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE)
    assert new.role(of.Role.SLAVE, 10).role == ofp.OFPCR_ROLE_SLAVE  # the master's own generation
    assert new.send(of.PacketOut(1, LACPDU)) and outs == []  # a slave's packet-out: refused, not sent
    assert switch.roles() == {0: "master", 1: "slave"}

    reply = new.role(of.Role.MASTER, 11)
    assert (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_MASTER, 11)
    assert switch.roles() == {0: "slave", 1: "master"} and switch.master() == 1
    (status,) = old.received()  # told at once, as Open vSwitch does
    assert isinstance(status, parser.OFPExperimenter)
    assert (status.experimenter, status.exp_type) == (emu.ONF_EXPERIMENTER, emu.ONFT_ROLE_STATUS)
    assert struct.unpack("!IB3xQ", bytes(status.data)) == (ofp.OFPCR_ROLE_SLAVE, 0, 11)

    (error,) = old.send(of.FlowMod(of.Table.INGRESS, 5, of.Match(eth_type=0x1234)))
    assert_error(error, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
    (error,) = old.send(of.PacketOut(1, LACPDU))
    assert_error(error, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
    assert outs == [] and [name for name, _ in old.conn.slave_refusals] == ["FLOW_MOD", "PACKET_OUT"]
    assert_error(old.role(of.Role.MASTER, 10), ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE)
    assert switch.master() == 1 and switch.stale_refusals == 2

    assert new.send(of.PacketOut(2, LACPDU)) == [] and outs == [2]  # the master's: taken
    assert [(c.controller, c.role, c.generation) for c in switch.role_changes] == [
        (0, ofp.OFPCR_ROLE_MASTER, 10), (1, ofp.OFPCR_ROLE_SLAVE, 10), (1, ofp.OFPCR_ROLE_MASTER, 11)]


def test_generations_compare_as_a_wrapping_distance():
    switch, first, second = two_peers()
    top = (1 << 64) - 1
    assert first.role(of.Role.MASTER, top).generation_id == top
    assert second.role(of.Role.MASTER, 1).role == ofp.OFPCR_ROLE_MASTER  # 1 is 2 past 2**64 - 1
    assert_error(first.role(of.Role.MASTER, top), ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE)
    assert emu.stale(5, 6) and not emu.stale(6, 6) and not emu.stale(7, 6)
    assert emu.stale(top, 0) and not emu.stale(0, top)


def test_equal_and_nochange_ignore_the_generation():
    switch, first, second = two_peers()
    first.role(of.Role.MASTER, 50)
    reply = second.role(of.Role.EQUAL, 3)
    assert (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_EQUAL, 50)
    reply = second.role(of.Role.NOCHANGE, 0)
    assert reply.role == ofp.OFPCR_ROLE_EQUAL and switch.roles() == {0: "master", 1: "equal"}


def test_a_slave_gets_packet_ins_only_as_its_async_config_says():
    switch, master, standby = two_peers()
    master.role(of.Role.MASTER, 1)
    standby.role(of.Role.SLAVE, 1)
    switch.send(emu.packet_in(1, LACPDU, emu.OFPR_ACTION))
    assert len(master.received()) == 1 and standby.received() == []  # a slave's default: no packet-ins
    switch.send_port_status(2, emu.OFPPR_ADD)
    assert all(isinstance(p.received()[0], parser.OFPPortStatus) for p in (master, standby))

    assert standby.send(mastership.ASYNC_CONFIG) == []  # the app's: port status, no packet-ins
    (config,) = standby.send(emu.message(emu.OFPT.GET_ASYNC_REQUEST, b"", 9))  # ofp_wire has no encoder for it
    assert isinstance(config, parser.OFPGetAsyncReply)
    wanted = mastership.ASYNC_CONFIG
    assert (tuple(config.packet_in_mask), tuple(config.port_status_mask), tuple(config.flow_removed_mask)) == (
        wanted.packet_in_mask, wanted.port_status_mask, wanted.flow_removed_mask)
    switch.send(emu.packet_in(1, LACPDU, emu.OFPR_ACTION))
    assert standby.received() == [] and len(master.received()) == 1
    switch.send_port_status(3, emu.OFPPR_ADD)
    assert isinstance(standby.received()[0], parser.OFPPortStatus)

    hot = of.SetAsync((wanted.packet_in_mask[0], 1 << emu.OFPR_ACTION), wanted.port_status_mask,
                      wanted.flow_removed_mask)
    assert standby.send(hot) == []
    switch.send(emu.packet_in(1, LACPDU, emu.OFPR_ACTION) * 3)  # a batch of three
    (packet_in, *_) = standby.received()
    assert isinstance(packet_in, parser.OFPPacketIn) and bytes(packet_in.data) == LACPDU
    assert (master.conn.packet_ins_sent, standby.conn.packet_ins_sent) == (5, 3)


def test_a_lost_connection_has_no_role():
    switch, first, second = two_peers()
    first.role(of.Role.MASTER, 4)
    first.conn.connection_lost(None)
    assert first.conn.closed.is_set() and switch.master() is None and switch.roles() == {1: "equal"}
    assert second.role(of.Role.MASTER, 5).role == ofp.OFPCR_ROLE_MASTER

