"""Turn ``ryu_lag.openflow`` values into Ryu OpenFlow 1.3 messages for a datapath."""

from __future__ import annotations

from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import openflow as of

_FLOW_COMMANDS = {
    of.FlowCommand.ADD: ofp.OFPFC_ADD,
    of.FlowCommand.DELETE: ofp.OFPFC_DELETE,
    of.FlowCommand.DELETE_STRICT: ofp.OFPFC_DELETE_STRICT,
}
_GROUP_COMMANDS = {
    of.GroupCommand.ADD: ofp.OFPGC_ADD,
    of.GroupCommand.MODIFY: ofp.OFPGC_MODIFY,
    of.GroupCommand.DELETE: ofp.OFPGC_DELETE,
}


def _match(match: of.Match) -> parser.OFPMatch:
    fields: dict[str, Any] = {}
    if match.in_port is not None:
        fields["in_port"] = match.in_port
    if match.metadata is not None:
        fields["metadata"] = match.metadata
    if match.eth_type is not None:
        fields["eth_type"] = match.eth_type
    if match.eth_src is not None:
        fields["eth_src"] = match.eth_src
    if match.eth_dst is not None:
        fields["eth_dst"] = match.eth_dst
    return parser.OFPMatch(**fields)


def _action(action: of.Action) -> Any:
    if isinstance(action, of.Group):
        return parser.OFPActionGroup(action.group_id)
    return parser.OFPActionOutput(action.port, action.max_len)


def _instructions(msg: of.FlowMod) -> list[Any]:
    inst: list[Any] = []
    if msg.meter is not None:
        inst.append(parser.OFPInstructionMeter(msg.meter, ofp.OFPIT_METER))
    if msg.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [_action(a) for a in msg.actions]))
    if msg.write_metadata is not None:
        inst.append(parser.OFPInstructionWriteMetadata(msg.write_metadata, 0xFFFFFFFFFFFFFFFF))
    if msg.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(int(msg.goto)))
    return inst


def port_up(port: Any) -> bool:
    """Whether a Ryu OFPPort has its link up and is not administratively down."""
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)


def to_ryu(datapath: Any, msg: of.Message) -> Any:
    """The Ryu message for ``msg`` on ``datapath``."""
    if isinstance(msg, of.FlowMod):
        return parser.OFPFlowMod(
            datapath,
            cookie=msg.cookie,
            cookie_mask=msg.cookie_mask,
            table_id=ofp.OFPTT_ALL if msg.table is None else int(msg.table),
            command=_FLOW_COMMANDS[msg.command],
            idle_timeout=msg.idle_timeout,
            hard_timeout=msg.hard_timeout,
            priority=msg.priority,
            buffer_id=ofp.OFP_NO_BUFFER,
            out_port=msg.out_port,
            out_group=msg.out_group,
            flags=ofp.OFPFF_SEND_FLOW_REM if msg.notify_removal else 0,
            match=_match(msg.match),
            instructions=_instructions(msg) if msg.command is of.FlowCommand.ADD else [],
        )
    if isinstance(msg, of.GroupMod):
        buckets = [
            parser.OFPBucket(weight=1, watch_port=port, watch_group=ofp.OFPG_ANY, actions=[parser.OFPActionOutput(port)])
            for port in msg.ports
        ]
        return parser.OFPGroupMod(datapath, _GROUP_COMMANDS[msg.command], ofp.OFPGT_SELECT, msg.group_id, buckets)
    if isinstance(msg, of.MeterMod):
        if msg.command is of.MeterCommand.DELETE:
            return parser.OFPMeterMod(datapath, ofp.OFPMC_DELETE, 0, msg.meter_id)
        bands = [parser.OFPMeterBandDrop(rate=msg.rate_pps, burst_size=msg.burst)]
        return parser.OFPMeterMod(datapath, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, msg.meter_id, bands)
    if isinstance(msg, of.PacketOut):
        return parser.OFPPacketOut(
            datapath,
            buffer_id=ofp.OFP_NO_BUFFER,
            in_port=ofp.OFPP_CONTROLLER,
            actions=[parser.OFPActionOutput(msg.port)],
            data=msg.data,
        )
    raise TypeError(f"not an OpenFlow message value: {msg!r}")
