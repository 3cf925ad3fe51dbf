"""``ofp_wire`` packs every message ryu_lag sends into the bytes Ryu's own parser classes
serialise for it: Ryu is the reference, built here from the same values field by field."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import ofp_wire
from ryu_lag import openflow as of
from ryu_lag import switching
from ryu_lag.switching import BOND_GROUP_MIN, Bond, LagSwitch

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
XID = 0x1234


def ryu_match(m: of.Match) -> parser.OFPMatch:
    fields = {
        name: value
        for name, value in (("in_port", m.in_port), ("metadata", m.metadata), ("eth_type", m.eth_type),
                            ("eth_src", m.eth_src), ("eth_dst", m.eth_dst))
        if value is not None
    }
    return parser.OFPMatch(**fields)


def ryu_action(a: of.Action) -> Any:
    if isinstance(a, of.Group):
        return parser.OFPActionGroup(a.group_id)
    return parser.OFPActionOutput(a.port, a.max_len)


def ryu_message(msg: of.Message) -> Any:
    """The Ryu parser object for ``msg``, as ryu_lag built them before ofp_wire."""
    if isinstance(msg, of.FlowMod):
        inst: list[Any] = []
        if msg.command is of.FlowCommand.ADD:
            if msg.meter is not None:
                inst.append(parser.OFPInstructionMeter(msg.meter, ofp.OFPIT_METER))
            if msg.actions:
                inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [ryu_action(a) for a in msg.actions]))
            if msg.write_metadata is not None:
                inst.append(parser.OFPInstructionWriteMetadata(msg.write_metadata, 0xFFFFFFFFFFFFFFFF))
            if msg.goto is not None:
                inst.append(parser.OFPInstructionGotoTable(int(msg.goto)))
        commands = {of.FlowCommand.ADD: ofp.OFPFC_ADD, of.FlowCommand.DELETE: ofp.OFPFC_DELETE,
                    of.FlowCommand.DELETE_STRICT: ofp.OFPFC_DELETE_STRICT}
        return parser.OFPFlowMod(
            DATAPATH, cookie=msg.cookie, cookie_mask=msg.cookie_mask,
            table_id=ofp.OFPTT_ALL if msg.table is None else int(msg.table), command=commands[msg.command],
            idle_timeout=msg.idle_timeout, hard_timeout=msg.hard_timeout, priority=msg.priority,
            buffer_id=ofp.OFP_NO_BUFFER, out_port=msg.out_port, out_group=msg.out_group,
            flags=ofp.OFPFF_SEND_FLOW_REM if msg.notify_removal else 0, match=ryu_match(msg.match), instructions=inst,
        )
    if isinstance(msg, of.GroupMod):
        commands = {of.GroupCommand.ADD: ofp.OFPGC_ADD, of.GroupCommand.MODIFY: ofp.OFPGC_MODIFY,
                    of.GroupCommand.DELETE: ofp.OFPGC_DELETE}
        if msg.group_type is of.GroupType.SELECT:
            buckets = [parser.OFPBucket(1, p, ofp.OFPG_ANY, [parser.OFPActionOutput(p)]) for p in msg.ports]
            group_type = ofp.OFPGT_SELECT
        else:
            buckets = [parser.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionOutput(p)]) for p in msg.ports]
            buckets += [parser.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionGroup(g)]) for g in msg.groups]
            group_type = ofp.OFPGT_ALL
        return parser.OFPGroupMod(DATAPATH, commands[msg.command], group_type, msg.group_id, buckets)
    if isinstance(msg, of.MeterMod):
        if msg.command is of.MeterCommand.DELETE:
            return parser.OFPMeterMod(DATAPATH, ofp.OFPMC_DELETE, 0, msg.meter_id)
        bands = [parser.OFPMeterBandDrop(rate=msg.rate_pps, burst_size=msg.burst)]
        command = ofp.OFPMC_ADD if msg.command is of.MeterCommand.ADD else ofp.OFPMC_MODIFY
        return parser.OFPMeterMod(DATAPATH, command, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, msg.meter_id, bands)
    assert isinstance(msg, of.PacketOut)
    return parser.OFPPacketOut(DATAPATH, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                               actions=[parser.OFPActionOutput(msg.port)], data=msg.data)


def ryu_bytes(msg: of.Message) -> bytes:
    ryu = ryu_message(msg)
    ryu.set_xid(XID)
    ryu.serialize()
    return bytes(ryu.buf)


def messages_a_switch_gets() -> list[of.Message]:
    """What the learning switch sends over a life: pipeline, bonds, members, learning, flushes,
    member changes, a resume that finds stale entries."""
    bond = BOND_GROUP_MIN
    switch = LagSwitch(mac_age=300)
    msgs = switch.resume(range(1, 6), True, [], None)
    msgs += switch.add_bond(bond, [1, 2])
    msgs += switch.set_member(bond, 1, True, True)
    msgs += switch.packet_in(1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff")
    msgs += switch.packet_in(3, "02:00:00:00:00:03", "02:00:00:00:00:01")
    msgs += switch.packet_in(4, "02:00:00:00:00:01", "02:00:00:00:00:03")  # a move
    msgs += switch.flow_removed(4, "02:00:00:00:00:01")
    msgs += switch.flush(3) + switch.flush()
    msgs += switch.set_members(bond, [2, 3]) + switch.release(1)
    msgs += switch.port_removed(5) + switch.remove_bond(bond)
    stale = of.ObservedSwitch(
        flows=(of.FlowMod(of.Table.ETH_DST, 7, of.Match(eth_dst="02:00:00:00:00:07"), cookie=switch_cookie()),),
        groups=(of.GroupMod(of.GroupCommand.ADD, bond, (9,)),),
        meters=(of.MeterMod(switching.lacp_meter(1), 1, 1), of.MeterMod(switching.lacp_meter(4), 1, 1)),
    )
    msgs += LagSwitch().resume(range(1, 6), True, [Bond(bond + 1, frozenset({4}))], stale)
    return msgs


def switch_cookie() -> int:
    return switching.COOKIE


EXTRA = [
    of.PacketOut(2, bytes.fromhex("0180c2000002") + bytes(118)),
    of.GroupMod(of.GroupCommand.ADD, 7, (3, 4), of.GroupType.ALL, (1, 2)),
    of.GroupMod(of.GroupCommand.MODIFY, 7, (), of.GroupType.ALL, ()),
    of.FlowMod(of.Table.INGRESS, 5, of.Match(in_port=1, metadata=1 << 32 | 3, eth_src="02:00:00:00:00:0a",
                                             eth_dst="01:80:c2:00:00:02", eth_type=0x8809),
               actions=(of.Output(of.OFPP_CONTROLLER), of.Group(3)), goto=of.Table.ETH_DST,
               write_metadata=9, meter=1, idle_timeout=7, hard_timeout=8, notify_removal=True),
]


@pytest.mark.parametrize("msg", messages_a_switch_gets() + EXTRA, ids=lambda m: type(m).__name__)
def test_bytes_are_the_ones_ryu_serialises(msg: of.Message) -> None:
    assert ofp_wire.encode(msg, XID) == ryu_bytes(msg)


def test_encode_all_numbers_xids_and_frames_each_message() -> None:
    msgs = messages_a_switch_gets()
    buf, next_xid = ofp_wire.encode_all(msgs, 0xFFFFFFFF)
    assert next_xid == len(msgs) - 1  # wrapped past 2**32 - 1
    parsed, xids = 0, []
    while buf:
        version, msg_type, length, xid = ofproto_parser.header(buf)
        assert version == ofp.OFP_VERSION
        xids.append(xid)
        buf = buf[length:]
        parsed += 1
    assert parsed == len(msgs)
    assert xids == [(0xFFFFFFFF + i) & 0xFFFFFFFF for i in range(len(msgs))]


def test_every_kind_of_edit_is_in_the_life() -> None:
    kinds = {(type(m).__name__, getattr(m, "command", None)) for m in messages_a_switch_gets()}
    assert {("MeterMod", c) for c in of.MeterCommand} <= kinds
    assert {("GroupMod", c) for c in of.GroupCommand} <= kinds
    assert {("FlowMod", c) for c in of.FlowCommand} <= kinds


def test_match_fields_read_back_unnamed_are_sent_as_read() -> None:
    """A strict delete of a flow read back with a field the model does not name (a VLAN) names it."""
    vlan = parser.OFPMatch(vlan_vid=0x1005)
    buf = bytearray()
    length = vlan.serialize(buf, 0)
    other = bytes(buf[4:4 + vlan.length - 4])
    assert length and other
    msg = of.FlowMod(of.Table.INGRESS, 5, of.Match(in_port=1, other_oxm=other), of.FlowCommand.DELETE_STRICT)
    ryu = ryu_message(dataclasses.replace(msg, match=of.Match(in_port=1)))
    ryu.match = parser.OFPMatch(in_port=1, vlan_vid=0x1005)
    ryu.set_xid(XID)
    ryu.serialize()
    assert ofp_wire.encode(msg, XID) == bytes(ryu.buf)


@pytest.mark.parametrize("msg", [
    of.FlowMod(of.Table.INGRESS, 5, of.Match(), unreadable="set_field"),
    of.GroupMod(of.GroupCommand.MODIFY, 7, (1,), unreadable="fast failover"),
    of.MeterMod(7, 1, 1, unreadable="kbps"),
], ids=lambda m: type(m).__name__)
def test_entries_read_back_with_unreadable_parts_are_never_sent(msg: of.Message) -> None:
    with pytest.raises(ValueError, match="unreadable"):
        ofp_wire.encode(msg)


def test_nothing_to_send_is_empty() -> None:
    assert ofp_wire.encode_all([], 5) == (b"", 5)


def test_not_a_message_is_refused() -> None:
    with pytest.raises(TypeError):
        ofp_wire.encode("FLOW_MOD", 1)  # type: ignore[arg-type]
