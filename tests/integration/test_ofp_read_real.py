"""Reading back what a real Open vSwitch holds (userspace datapath): ``ofp_read`` against the switch.

The test speaks OpenFlow 1.3 to a netdev bridge over its management socket: our messages go
in as ``ofp_wire`` bytes, the flow, group and meter dumps come back as Ryu parses them, and
``ofp_read`` turns them into the values ``LagSwitch.resume`` compares. A resume over what
the switch reports must find nothing to do; entries the model cannot say must be fixed.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import types
from collections.abc import Iterator
from typing import Any

import pytest
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import ofp_read, ofp_wire
from ryu_lag import openflow as of
from ryu_lag.switching import (
    BOND_GROUP_MIN,
    COOKIE,
    COOKIE_MASK,
    Bond,
    LagSwitch,
    bond_logical,
    is_our_group,
    lacp_meter,
    learn_meter,
)

_DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=None)
PORTS = range(1, 7)
BOND = BOND_GROUP_MIN
OTHER_BOND = BOND_GROUP_MIN + 1


class OpenFlowSession:
    """A controller connection to one bridge's management socket: send, dump, collect errors."""

    def __init__(self, bridge: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(f"/var/run/openvswitch/{bridge}.mgmt")
        self.buf = b""
        self.xid = 1
        self.sock.sendall(ofp_wire._HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 0))
        assert self._next()[1] == ofp.OFPT_HELLO

    def close(self) -> None:
        self.sock.close()

    def _next(self) -> tuple[int, int, int, int, bytes]:
        while len(self.buf) < 8 or len(self.buf) < ofproto_parser.header(self.buf)[2]:
            chunk = self.sock.recv(65536)
            assert chunk, "the switch closed the connection"
            self.buf += chunk
        version, msg_type, length, xid = ofproto_parser.header(self.buf)
        raw, self.buf = self.buf[:length], self.buf[length:]
        return version, msg_type, length, xid, raw

    def _request(self, msg: Any) -> list[Any]:
        """Send a Ryu message and a barrier; every message the switch answers until the barrier's reply."""
        msg.set_xid(self.xid)
        self.xid += 1
        msg.serialize()
        barrier = parser.OFPBarrierRequest(_DATAPATH)
        barrier.set_xid(self.xid)
        self.xid += 1
        barrier.serialize()
        self.sock.sendall(bytes(msg.buf) + bytes(barrier.buf))
        return self._until(barrier.xid)

    def _until(self, barrier_xid: int) -> list[Any]:
        answers = []
        while True:
            version, msg_type, length, xid, raw = self._next()
            if msg_type == ofp.OFPT_BARRIER_REPLY and xid == barrier_xid:
                return answers
            if msg_type == ofp.OFPT_ECHO_REQUEST:
                continue
            answers.append(ofproto_parser.msg(_DATAPATH, version, msg_type, length, xid, raw))

    def send(self, msgs: list[of.Message]) -> None:
        """Send messages as ``ofp_wire`` bytes; the switch must refuse none."""
        data, self.xid = ofp_wire.encode_all(msgs, self.xid)
        barrier = parser.OFPBarrierRequest(_DATAPATH)
        barrier.set_xid(self.xid)
        self.xid += 1
        barrier.serialize()
        self.sock.sendall(data + bytes(barrier.buf))
        errors = [m for m in self._until(barrier.xid) if isinstance(m, parser.OFPErrorMsg)]
        assert errors == []

    def _dump(self, request: Any) -> list[Any]:
        body = []
        for reply in self._request(request):
            assert not isinstance(reply, parser.OFPErrorMsg), reply
            body += reply.body
        return body

    def observe(self) -> of.ObservedSwitch:
        """What resume is given: our flows, every group and meter, read back through ofp_read."""
        flows = self._dump(parser.OFPFlowStatsRequest(_DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                                      COOKIE, COOKIE_MASK, parser.OFPMatch()))
        groups = self._dump(parser.OFPGroupDescStatsRequest(_DATAPATH, 0))
        meters = self._dump(parser.OFPMeterConfigStatsRequest(_DATAPATH, 0, ofp.OFPM_ALL))
        return of.ObservedSwitch(
            flows=tuple(ofp_read.flows_from_stats(flows)),
            groups=tuple(ofp_read.groups_from_desc(groups)),
            meters=tuple(ofp_read.meters_from_config(meters)),
        )


def _ofctl(*args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def bridge() -> Iterator[str]:
    name = "rr" + secrets.token_hex(3)
    subprocess.run(["ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                    "protocols=OpenFlow13", "fail_mode=secure"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", name], check=True)


@pytest.fixture
def session(bridge: str) -> Iterator[OpenFlowSession]:
    session = OpenFlowSession(bridge)
    yield session
    session.close()


def bonds() -> list[Bond]:
    return [
        Bond(BOND, frozenset({1, 2}), frozenset({1, 2}), frozenset({1})),
        Bond(OTHER_BOND, frozenset({3}), frozenset({3}), frozenset()),
    ]


def installed(session: OpenFlowSession) -> LagSwitch:
    """Our whole pipeline, two bonds and learned MACs (on a bond and a plain port), sent to the switch."""
    lag = LagSwitch(mac_age=300)
    session.send(lag.resume(PORTS, True, bonds(), of.ObservedSwitch()))
    session.send(lag.packet_in(1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff"))
    session.send(lag.packet_in(5, "02:00:00:00:00:05", "02:00:00:00:00:01"))
    return lag


def test_everything_we_install_reads_back_equal(session, bridge):
    lag = installed(session)
    _ofctl("add-group", bridge, "group_id=1,type=select,bucket=output:4")  # another application's
    _ofctl("add-meter", bridge, "meter=1,kbps,band=type=drop,rate=1000")
    observed = session.observe()
    assert {g.group_id for g in observed.groups} >= {1, BOND, OTHER_BOND}
    learning = {learn_meter(p) for p in PORTS if p not in (1, 2, 3)} | {learn_meter(bond_logical(g)) for g in (BOND, OTHER_BOND)}
    assert {m.meter_id for m in observed.meters} == {1, lacp_meter(1), lacp_meter(2), lacp_meter(3)} | learning
    assert [f for f in observed.flows if f.unreadable or f.match.other_oxm] == []
    assert [g for g in observed.groups if is_our_group(g.group_id) and g.unreadable] == []
    assert [m.unreadable != "" for m in observed.meters if m.meter_id == 1] == [True]  # kbps: not ours to say

    resumed = LagSwitch(mac_age=300)
    assert resumed.resume(PORTS, True, bonds(), observed) == []
    assert resumed.macs() == lag.macs() == {"02:00:00:00:00:01": bond_logical(BOND), "02:00:00:00:00:05": 5}
    assert len(observed.flows) == len(_ofctl("dump-flows", bridge, "--no-stats").splitlines())


def test_what_the_model_cannot_say_is_replaced_or_deleted(session, bridge):
    installed(session)
    # ours by cookie, but with a match field, an action and a group bucket we never send
    _ofctl("add-flow", bridge, f"table=0,priority=7,cookie={COOKIE | 7:#x},in_port=4,dl_vlan=5,actions=drop")
    _ofctl("add-flow", bridge, f"table=0,priority=20000,cookie={COOKIE:#x},in_port=5,actions=mod_vlan_vid:9,output:6")
    _ofctl("mod-group", bridge, f"group_id={OTHER_BOND},type=select,bucket=weight=5,actions=output:3")
    _ofctl("add-group", bridge, "group_id=1,type=all,bucket=output:4")  # another application's: never touched
    # ours by id: a meter at the wrong rate, a stale meter and a stale group
    _ofctl("mod-meter", bridge, f"meter={lacp_meter(1)},pktps,burst,band=type=drop,rate=99,burst_size=99")
    _ofctl("add-meter", bridge, f"meter={lacp_meter(6)},pktps,burst,band=type=drop,rate=5,burst_size=5")
    _ofctl("add-group", bridge, f"group_id={BOND + 9},type=select,bucket=weight=1,watch_port=6,actions=output:6")
    observed = session.observe()
    vlan_flow = next(f for f in observed.flows if f.priority == 7)
    assert vlan_flow.match.in_port == 4 and vlan_flow.match.other_oxm
    assert next(f for f in observed.flows if f.match == of.Match(in_port=5)).unreadable
    assert next(g for g in observed.groups if g.group_id == OTHER_BOND).unreadable

    msgs = LagSwitch(mac_age=300).resume(PORTS, True, bonds(), observed)
    assert of.FlowMod(of.Table.INGRESS, 7, vlan_flow.match, of.FlowCommand.DELETE_STRICT,
                      cookie=COOKIE | 7, cookie_mask=(1 << 64) - 1) in msgs
    assert [(m.command, m.group_id) for m in msgs if isinstance(m, of.GroupMod)] == [
        (of.GroupCommand.MODIFY, OTHER_BOND), (of.GroupCommand.DELETE, BOND + 9)]
    assert [m for m in msgs if isinstance(m, of.MeterMod)] == [
        of.MeterMod(lacp_meter(1), 20, 20, of.MeterCommand.MODIFY), of.MeterMod(lacp_meter(6), command=of.MeterCommand.DELETE)]
    session.send(msgs)
    again = session.observe()
    assert LagSwitch(mac_age=300).resume(PORTS, True, bonds(), again) == []
    assert " group_id=1,type=all,bucket=actions=output:4\n" in _ofctl("dump-groups", bridge)
