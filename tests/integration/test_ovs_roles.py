"""What Open vSwitch does with the role and async messages the controller cluster relies on.

Two controller connections to one real bridge, spoken to with ``ofp_wire`` bytes and read
with Ryu's parser: a slave with ``mastership.ASYNC_CONFIG`` gets port status and no
packet-ins, while the master gets both (a slave mask with ACTION would bring it the LACPDU
punts: the switch keeps the masks per connection); generation ids fence a deposed master (its old
MASTER and SLAVE requests are refused as stale, its writes with IS_SLAVE); the deposed
master is told at once with an ONF role-status message; a SLAVE request carrying the
master's own generation is accepted (what ``mastership.role_request`` sends).
"""

from __future__ import annotations

import socket
import struct
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import mastership, ofp_wire
from ryu_lag import openflow as of
from tests.integration.netlab import Lab, sh

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
ONF_EXPERIMENTER = 0x4F4E4600
ONFT_ROLE_STATUS = 1911  # OpenFlow 1.3 extension: the switch tells a controller its role changed
WAIT = 3.0  # seconds for an answer from a switch on a busy VM
QUIET = 0.5  # seconds of silence that show nothing came
LACPDU = bytes.fromhex("0180c2000002" "020000000001" "8809" "0101") + bytes(106)


class Channel:
    """One OpenFlow 1.3 connection from the switch, answered by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.05)
        self.buf = b""
        self.xid = 100
        self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 1))

    def send(self, *msgs: of.Message | of.ControlMessage) -> None:
        raw, self.xid = ofp_wire.encode_all(msgs, self.xid)
        self.sock.sendall(raw)

    def get_async(self) -> None:
        self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_GET_ASYNC_REQUEST, 8, 7))

    def receive(self, seconds: float) -> list[Any]:
        """Every message (but echoes and the handshake) that arrives within ``seconds``."""
        out: list[Any] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                data = None
            if data == b"":
                raise ConnectionError("the switch closed the connection")
            self.buf += data or b""
            while len(self.buf) >= 8:
                version, msg_type, length, xid = ofproto_parser.header(self.buf)
                if len(self.buf) < length:
                    break
                raw, self.buf = self.buf[:length], self.buf[length:]
                if msg_type == ofp.OFPT_ECHO_REQUEST:
                    self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_ECHO_REPLY, 8, xid))
                elif msg_type != ofp.OFPT_HELLO:
                    out.append(ofproto_parser.msg(DATAPATH, version, msg_type, length, xid, raw))
        return out

    def expect(self, kind: type, seconds: float = WAIT) -> Any:
        """The first message of ``kind`` within ``seconds``; any other message first fails the test."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for msg in self.receive(0.1):
                assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg}"
                return msg
        raise AssertionError(f"no {kind.__name__} within {seconds} s")

    def quiet(self) -> None:
        assert self.receive(QUIET) == []

    def role(self, role: of.Role, generation: int) -> Any:
        self.send(of.RoleRequest(role, generation))
        return self.receive_one()

    def receive_one(self) -> Any:
        msg = self.expect(object)
        self.quiet()
        return msg


@pytest.fixture
def channels(lab: Lab) -> Iterator[tuple[str, Channel, Channel]]:
    """A bridge connected to two controllers (both ours), each channel past its handshake."""
    listeners = []
    for _ in range(2):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(15)
        listeners.append(listener)
    br = lab.bridge("r", dpid=0x99)
    sh("ovs-vsctl", "set-controller", br, *(f"tcp:127.0.0.1:{ls.getsockname()[1]}" for ls in listeners))
    try:
        first, second = (Channel(ls.accept()[0]) for ls in listeners)
        for channel in (first, second):
            channel.quiet()  # handshake done (the switch sends nothing unasked)
        yield br, first, second
    finally:
        for listener in listeners:
            listener.close()


def punt_lacpdu(br: str) -> None:
    """A LACPDU into the pipeline, which outputs it to the controller (packet-in reason ACTION)."""
    sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", br, "table=0,priority=100,dl_type=0x8809,actions=controller")
    sh("ovs-ofctl", "-O", "OpenFlow13", "packet-out", br, "LOCAL", "table", LACPDU.hex())


def assert_role_error(msg: Any, code: int) -> None:
    assert isinstance(msg, parser.OFPErrorMsg), msg
    assert (msg.type, msg.code) == (ofp.OFPET_ROLE_REQUEST_FAILED, code), msg


def assert_is_slave(msg: Any) -> None:
    assert isinstance(msg, parser.OFPErrorMsg), msg
    assert (msg.type, msg.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE), msg


def test_a_slave_with_our_async_config_gets_port_status_only(channels: tuple[str, Channel, Channel]) -> None:
    br, master, standby = channels
    for channel in (master, standby):
        channel.send(mastership.ASYNC_CONFIG)
    assert master.role(of.Role.MASTER, 10).role == ofp.OFPCR_ROLE_MASTER
    assert standby.role(of.Role.SLAVE, 10).role == ofp.OFPCR_ROLE_SLAVE
    standby.send(mastership.ASYNC_CONFIG)  # a slave may set its async config
    standby.get_async()
    reply = standby.receive_one()
    assert isinstance(reply, parser.OFPGetAsyncReply)
    config = mastership.ASYNC_CONFIG
    assert (tuple(reply.packet_in_mask), tuple(reply.port_status_mask), tuple(reply.flow_removed_mask)) == (
        config.packet_in_mask, config.port_status_mask, config.flow_removed_mask)
    punt_lacpdu(br)
    packet_in = master.expect(parser.OFPPacketIn)
    assert packet_in.reason == ofp.OFPR_ACTION and bytes(packet_in.data) == LACPDU
    standby.quiet()
    sh("ovs-vsctl", "add-port", br, br + "p", "--", "set", "interface", br + "p", "type=internal")
    for channel in (master, standby):
        assert isinstance(channel.expect(parser.OFPPortStatus), parser.OFPPortStatus)


def test_the_masks_are_per_connection(channels: tuple[str, Channel, Channel]) -> None:
    br, master, standby = channels
    assert master.role(of.Role.MASTER, 10).role == ofp.OFPCR_ROLE_MASTER
    assert standby.role(of.Role.SLAVE, 10).role == ofp.OFPCR_ROLE_SLAVE
    punt_lacpdu(br)
    assert isinstance(master.expect(parser.OFPPacketIn), parser.OFPPacketIn)
    standby.quiet()  # a slave's default: no packet-ins
    config = mastership.ASYNC_CONFIG
    standby.send(of.SetAsync((config.packet_in_mask[0], 1 << ofp.OFPR_ACTION), config.port_status_mask,
                             config.flow_removed_mask))
    punt_lacpdu(br)
    for channel in (master, standby):
        packet_in = channel.expect(parser.OFPPacketIn)
        assert packet_in.reason == ofp.OFPR_ACTION and bytes(packet_in.data) == LACPDU


def test_generations_fence_a_deposed_master(channels: tuple[str, Channel, Channel]) -> None:
    _, old, new = channels
    reply = old.role(of.Role.MASTER, 10)
    assert (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_MASTER, 10)
    new.send(mastership.ASYNC_CONFIG)
    assert_role_error(new.role(of.Role.SLAVE, 7), ofp.OFPRRFC_STALE)  # older than the master's: refused
    assert new.role(of.Role.SLAVE, 10).role == ofp.OFPCR_ROLE_SLAVE  # the master's own: accepted
    reply = new.role(of.Role.MASTER, 11)  # the takeover: a higher generation
    assert (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_MASTER, 11)
    status = old.receive_one()  # the switch tells the old master at once
    assert isinstance(status, parser.OFPExperimenter)
    assert (status.experimenter, status.exp_type) == (ONF_EXPERIMENTER, ONFT_ROLE_STATUS)
    role, reason, generation = struct.unpack("!IB3xQ", bytes(status.data))
    assert (role, generation) == (ofp.OFPCR_ROLE_SLAVE, 11)
    old.send(of.FlowMod(of.Table.INGRESS, 5, of.Match(eth_type=0x1234)))
    assert_is_slave(old.receive_one())
    old.send(of.PacketOut(1, LACPDU))
    assert_is_slave(old.receive_one())
    assert_role_error(old.role(of.Role.MASTER, 10), ofp.OFPRRFC_STALE)  # a late request of the old master
    new.send(of.FlowMod(of.Table.INGRESS, 5, of.Match(eth_type=0x1234)))
    new.quiet()  # the master's writes are taken
