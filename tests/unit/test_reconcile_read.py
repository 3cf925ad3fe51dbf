"""``ofp_read`` on the entries Ryu parses from a switch's replies: what it cannot say never equals
what ryu_lag wants, and never raises. (The round trip through a real Open vSwitch is in
``tests/integration/test_ofp_read_real.py``.)"""

from __future__ import annotations

import types

from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import ofp_read, ofp_wire
from ryu_lag import openflow as of
from ryu_lag.switching import BOND_GROUP_MIN, COOKIE, Bond, LagSwitch

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=None)


def stats(match: parser.OFPMatch, instructions: list, *, table_id: int = 0, flags: int = 0, cookie: int = COOKIE,
          priority: int = 100, idle_timeout: int = 0, hard_timeout: int = 0) -> parser.OFPFlowStats:
    return parser.OFPFlowStats(table_id=table_id, duration_sec=5, duration_nsec=0, priority=priority,
                               idle_timeout=idle_timeout, hard_timeout=hard_timeout, flags=flags, cookie=cookie,
                               packet_count=9, byte_count=99, match=match, instructions=instructions)


def as_reply(entry: of.FlowMod) -> parser.OFPFlowStats:
    """A flow we send, as the switch's flow-stats entry for it (through Ryu's own parser)."""
    flow_mod = ofp_wire.encode(entry)
    parsed = ofproto_parser.msg(DATAPATH, *ofproto_parser.header(flow_mod), flow_mod)
    return stats(parsed.match, parsed.instructions, table_id=parsed.table_id, flags=parsed.flags,
                 cookie=parsed.cookie, priority=parsed.priority, idle_timeout=parsed.idle_timeout,
                 hard_timeout=parsed.hard_timeout)


def test_every_flow_of_a_pipeline_reads_back_as_its_add():
    lag = LagSwitch()
    msgs = lag.resume(range(1, 5), True, [Bond(BOND_GROUP_MIN, frozenset({1, 2}), frozenset({1}), frozenset({1}))],
                      of.ObservedSwitch())
    msgs += lag.packet_in(1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff")
    flows = [m for m in msgs if isinstance(m, of.FlowMod)]
    assert flows and ofp_read.flows_from_stats(as_reply(f) for f in flows) == flows


def test_flows_not_ours_are_skipped():
    assert ofp_read.flows_from_stats([stats(parser.OFPMatch(), [], cookie=0x1234)]) == []


def test_what_a_flow_has_beyond_the_model_is_marked_never_raised():
    apply_set_field = parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
        parser.OFPActionOutput(3), parser.OFPActionSetField(vlan_vid=0x1005)])
    write = parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [parser.OFPActionOutput(3)])
    masked = parser.OFPInstructionWriteMetadata(7, 0xFF)
    for instructions, kw in (
        ([apply_set_field], {}),
        ([write], {}),
        ([masked], {}),
        ([parser.OFPInstructionGotoTable(9)], {}),
        ([], {"table_id": 9}),
        ([], {"flags": 1 << 7}),
    ):
        flow = ofp_read.flows_from_stats([stats(parser.OFPMatch(in_port=1), instructions, **kw)])[0]
        assert flow.unreadable and flow.match == of.Match(in_port=1)
    assert ofp_read.flows_from_stats([stats(parser.OFPMatch(), [], table_id=9)])[0].table == 9


def test_match_fields_beyond_the_model_are_kept_as_oxm_bytes():
    for match in (parser.OFPMatch(in_port=1, vlan_vid=0x1005), parser.OFPMatch(in_port=1, metadata=(4, 0xF)),
                  parser.OFPMatch(in_port=1, eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"))):
        read = ofp_read.flows_from_stats([stats(match, [])])[0].match
        assert read.in_port == 1 and read.other_oxm
        assert dict(parser.OFPMatch.parser(ofp_wire.match(read), 0).items()) == dict(match.items())  # as sent


def test_groups_beyond_the_model_are_marked():
    fast_failover = parser.OFPGroupDescStats(ofp.OFPGT_FF, 5, [parser.OFPBucket(0, 3, ofp.OFPG_ANY,
                                                                                  [parser.OFPActionOutput(3)])])
    weighted = parser.OFPGroupDescStats(ofp.OFPGT_SELECT, 6, [parser.OFPBucket(5, 3, ofp.OFPG_ANY,
                                                                                [parser.OFPActionOutput(3)])])
    two_actions = parser.OFPGroupDescStats(ofp.OFPGT_ALL, 7, [parser.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, [
        parser.OFPActionOutput(3), parser.OFPActionOutput(4)])])
    ours = parser.OFPGroupDescStats(ofp.OFPGT_ALL, 8, [
        parser.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionOutput(3)]),
        parser.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionGroup(6)])])
    read = ofp_read.groups_from_desc([fast_failover, weighted, two_actions, ours])
    assert [bool(g.unreadable) for g in read] == [True, True, True, False]
    assert read[3] == of.GroupMod(of.GroupCommand.ADD, 8, (3,), of.GroupType.ALL, (6,))


def test_meters_beyond_the_model_are_marked():
    ours = parser.OFPMeterConfigStats(ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, 4, [parser.OFPMeterBandDrop(20, 20)])
    kbps = parser.OFPMeterConfigStats(ofp.OFPMF_KBPS, 5, [parser.OFPMeterBandDrop(1000, 0)])
    two = parser.OFPMeterConfigStats(ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, 6,
                                     [parser.OFPMeterBandDrop(20, 20), parser.OFPMeterBandDscpRemark(30, 30, 1)])
    assert ofp_read.meters_from_config([ours, kbps, two]) == [
        of.MeterMod(4, 20, 20), of.MeterMod(5, unreadable=f"flags {ofp.OFPMF_KBPS:#x} bands {kbps.bands}"),
        of.MeterMod(6, unreadable=f"flags {ofp.OFPMF_PKTPS | ofp.OFPMF_BURST:#x} bands {two.bands}")]
