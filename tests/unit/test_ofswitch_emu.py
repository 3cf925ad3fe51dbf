"""The benchmarks' emulated switch speaks OpenFlow 1.3 as Ryu understands it, both ways:
what it sends parses with ``ryu.ofproto.ofproto_v1_3_parser``, and it reads what Ryu
serializes (FLOW_MOD, PACKET_OUT, GROUP_MOD and the set-up requests)."""

from __future__ import annotations

import types
from typing import Any

from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from benchmarks import ofswitch_emu as emu

DPID = 0x0000_0000_0000_00AB
DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
FRAME = bytes.fromhex("ffffffffffff" "020000000007" "0806") + bytes(46)


class FakeTransport:
    """Collects what the switch writes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> None:
        return None


def ryu_parse(data: bytes) -> list[Any]:
    """Every OpenFlow message in ``data``, parsed by Ryu."""
    msgs = []
    while data:
        version, msg_type, length, xid = ofproto_parser.header(data)
        msgs.append(ofproto_parser.msg(DATAPATH, version, msg_type, length, xid, data[:length]))
        data = data[length:]
    return msgs


def serialized(msg: Any) -> bytes:
    msg.serialize()
    return bytes(msg.buf)


def switch() -> tuple[emu.EmuSwitch, FakeTransport]:
    sw = emu.EmuSwitch(DPID, [1, 2, 3])
    transport = FakeTransport()
    sw.connection_made(transport)  # type: ignore[arg-type]
    return sw, transport


def exchange(sw: emu.EmuSwitch, transport: FakeTransport, request: Any) -> list[Any]:
    transport.data = b""
    request.xid = 77
    sw.data_received(serialized(request))
    return ryu_parse(transport.data)


def test_hello_then_the_set_up_replies_parse_with_ryu():
    sw, transport = switch()
    (hello,) = ryu_parse(transport.data)
    assert isinstance(hello, parser.OFPHello) and hello.version == ofp.OFP_VERSION

    (features,) = exchange(sw, transport, parser.OFPFeaturesRequest(DATAPATH))
    assert isinstance(features, parser.OFPSwitchFeatures)
    assert (features.datapath_id, features.n_tables, features.xid) == (DPID, 254, 77)

    (ports,) = exchange(sw, transport, parser.OFPPortDescStatsRequest(DATAPATH, 0))
    assert isinstance(ports, parser.OFPPortDescStatsReply) and ports.xid == 77
    by_no = {p.port_no: p for p in ports.body}
    assert sorted(by_no) == [1, 2, 3, ofp.OFPP_LOCAL]
    assert by_no[2].hw_addr == emu.mac_text(emu.port_mac(DPID, 2))
    assert not by_no[2].state & ofp.OFPPS_LINK_DOWN
    assert sw.described.is_set()

    (meters,) = exchange(sw, transport, parser.OFPMeterFeaturesStatsRequest(DATAPATH, 0))
    assert isinstance(meters, parser.OFPMeterFeaturesStatsReply)
    assert meters.body[0].max_meter == 0

    (echo,) = exchange(sw, transport, parser.OFPEchoRequest(DATAPATH, data=b"ping"))
    assert isinstance(echo, parser.OFPEchoReply) and (echo.xid, echo.data) == (77, b"ping")

    (barrier,) = exchange(sw, transport, parser.OFPBarrierRequest(DATAPATH))
    assert isinstance(barrier, parser.OFPBarrierReply) and barrier.xid == 77

    (error,) = exchange(sw, transport, parser.OFPQueueStatsRequest(DATAPATH))
    assert isinstance(error, parser.OFPErrorMsg)
    assert (error.type, error.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART)


def test_it_answers_a_resuming_controller_s_reads():
    """Flow stats and group descriptions (it holds none) and meter configs (what it was given) parse with Ryu."""
    sw = emu.EmuSwitch(DPID, [1, 2], emu.Meters.PKTPS)
    transport = FakeTransport()
    sw.connection_made(transport)  # type: ignore[arg-type]
    (flows,) = exchange(sw, transport, parser.OFPFlowStatsRequest(DATAPATH, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                                                  ofp.OFPG_ANY, 1, 1, parser.OFPMatch()))
    assert isinstance(flows, parser.OFPFlowStatsReply) and (flows.xid, flows.body) == (77, [])
    (groups,) = exchange(sw, transport, parser.OFPGroupDescStatsRequest(DATAPATH, 0))
    assert isinstance(groups, parser.OFPGroupDescStatsReply) and groups.body == []

    band = [parser.OFPMeterBandDrop(rate=20, burst_size=20)]
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
    for command, meter_id, rate in ((ofp.OFPMC_ADD, 0x4C410001, 20), (ofp.OFPMC_ADD, 0x4C420003, 100),
                                    (ofp.OFPMC_MODIFY, 0x4C410001, 30), (ofp.OFPMC_DELETE, 0x4C420003, 0)):
        band = [parser.OFPMeterBandDrop(rate=rate, burst_size=rate)] if rate else []
        assert exchange(sw, transport, parser.OFPMeterMod(DATAPATH, command, flags, meter_id, band)) == []
    (meters,) = exchange(sw, transport, parser.OFPMeterConfigStatsRequest(DATAPATH, 0, ofp.OFPM_ALL))
    assert isinstance(meters, parser.OFPMeterConfigStatsReply)
    (meter,) = meters.body
    assert (meter.meter_id, meter.flags) == (0x4C410001, flags)
    assert [(b.type, b.rate, b.burst_size) for b in meter.bands] == [(ofp.OFPMBT_DROP, 30, 30)]


def test_meter_features_as_chosen_and_a_kbps_only_switch_refuses_packet_meters():
    both = ofp.OFPMF_PKTPS | ofp.OFPMF_KBPS
    for meters, capabilities in ((emu.Meters.PKTPS, both), (emu.Meters.KBPS_ONLY, ofp.OFPMF_KBPS)):
        sw = emu.EmuSwitch(DPID, [1], meters)
        transport = FakeTransport()
        sw.connection_made(transport)  # type: ignore[arg-type]
        (reply,) = exchange(sw, transport, parser.OFPMeterFeaturesStatsRequest(DATAPATH, 0))
        (features,) = reply.body
        assert features.max_meter > 0 and features.band_types == 1 << ofp.OFPMBT_DROP
        assert features.capabilities & both == capabilities
    band = [parser.OFPMeterBandDrop(rate=20, burst_size=20)]
    (error,) = exchange(sw, transport, parser.OFPMeterMod(DATAPATH, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 5, band))
    assert isinstance(error, parser.OFPErrorMsg)
    assert (error.type, error.code) == (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_FLAGS)
    assert exchange(sw, transport, parser.OFPMeterMod(DATAPATH, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 5, band)) == []
    assert sw.meter_table.keys() == {5}


def test_many_ports_come_in_several_multipart_replies():
    sw = emu.EmuSwitch(DPID, range(1, 1501))
    transport = FakeTransport()
    sw.connection_made(transport)  # type: ignore[arg-type]
    replies = exchange(sw, transport, parser.OFPPortDescStatsRequest(DATAPATH, 0))
    assert [r.flags for r in replies] == [ofp.OFPMPF_REPLY_MORE, 0]
    assert sum(len(r.body) for r in replies) == 1501


def test_packet_in_and_echo_request_parse_with_ryu():
    (msg,) = ryu_parse(emu.packet_in(7, FRAME))
    assert isinstance(msg, parser.OFPPacketIn)
    assert msg.match["in_port"] == 7
    assert (msg.buffer_id, msg.reason, msg.total_len, msg.data) == (ofp.OFP_NO_BUFFER, ofp.OFPR_NO_MATCH, len(FRAME), FRAME)

    (action,) = ryu_parse(emu.packet_in(3, FRAME, emu.OFPR_ACTION))
    assert action.reason == ofp.OFPR_ACTION and action.match["in_port"] == 3

    sw, transport = switch()
    transport.data = b""
    sw.send_echo()
    (echo,) = ryu_parse(transport.data)
    assert isinstance(echo, parser.OFPEchoRequest)
    reply = parser.OFPEchoReply(DATAPATH, data=b"")
    reply.xid = echo.xid
    sw.data_received(serialized(reply))
    assert len(sw.echo_rtts) == 1


def test_it_reads_flow_mods_packet_outs_and_group_mods_that_ryu_serializes():
    sw, _transport = switch()
    flow_mods: list[bytes] = []
    packet_outs: list[tuple[int, bytes]] = []
    sw.on_flow_mod = lambda msg, now: flow_mods.append(msg)
    sw.on_packet_out = lambda port, frame, now: packet_outs.append((port, frame))
    actions = [parser.OFPActionOutput(5)]
    learn = parser.OFPFlowMod(
        DATAPATH, table_id=1, priority=20000, cookie=1, idle_timeout=300,
        match=parser.OFPMatch(metadata=3, eth_src="02:00:00:00:00:07"),
        instructions=[parser.OFPInstructionGotoTable(2)],
    )
    forward = parser.OFPFlowMod(
        DATAPATH, table_id=2, priority=20000,
        match=parser.OFPMatch(in_port=3, eth_dst="02:00:00:00:00:08"),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)],
    )
    out = parser.OFPPacketOut(DATAPATH, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, actions, FRAME)
    reply = parser.OFPPacketOut(DATAPATH, ofp.OFP_NO_BUFFER, 4, [parser.OFPActionOutput(ofp.OFPP_IN_PORT)], FRAME)
    group = parser.OFPGroupMod(DATAPATH, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 1,
                               [parser.OFPBucket(weight=1, watch_port=1, actions=[parser.OFPActionOutput(1)])])
    stream = b"".join(serialized(m) for m in (learn, forward, out, reply, group))
    # Delivered in awkward pieces, as TCP may.
    for i in range(0, len(stream), 37):
        sw.data_received(stream[i:i + 37])

    assert [emu.flow_mod_macs(m) for m in flow_mods] == [
        (bytes.fromhex("020000000007"), None),
        (None, bytes.fromhex("020000000008")),
    ]
    assert packet_outs == [(5, FRAME), (4, FRAME)]
    assert (sw.counts["FLOW_MOD"], sw.counts["PACKET_OUT"], sw.counts["GROUP_MOD"]) == (2, 2, 1)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert emu.percentile(values, 50) == 50.0
    assert emu.percentile(values, 99) == 99.0
    assert emu.percentile([3.0], 99) == 3.0
    assert emu.percentile([], 50) is None
