"""Encode ``ryu_lag.openflow`` message values as OpenFlow 1.3 bytes.

The Ryu shell sends what comes out of here with ``Datapath.send``: building Ryu's
parser objects (``OFPFlowMod``, ``OFPMatch`` ...) and serialising them cost several
times more than packing the few fields ryu_lag uses, and a learning switch sends a
handful of messages per packet-in. Standard library only; the bytes are the ones Ryu
would produce for the same message (a unit test compares them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ryu_lag import openflow as of

OFP_VERSION = 4
OFP_NO_BUFFER = 0xFFFFFFFF

_HEADER = struct.Struct("!BBHI")  # version, type, length, xid
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # cookie ... flags, pad
_GROUP_MOD = struct.Struct("!HBxI")  # command, type, pad, group_id
_BUCKET_OUTPUT = struct.Struct("!HHII4xHHIH6x")  # a bucket (len, weight, watch port and group) with one output
_BUCKET_GROUP = struct.Struct("!HHII4xHHI")  # a bucket with one group action
_METER_MOD = struct.Struct("!HHI")  # command, flags, meter_id
_METER_BAND_DROP = struct.Struct("!HHII4x")  # type, len, rate, burst_size
_PACKET_OUT = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len
_MATCH_HEADER = struct.Struct("!HH")  # type (OXM), length without padding
_ACTION_OUTPUT = struct.Struct("!HHIH6x")
_ACTION_GROUP = struct.Struct("!HHI")
_INSTRUCTION_HEADER = struct.Struct("!HH4x")  # apply-actions: type, len, pad
_INSTRUCTION_GOTO = struct.Struct("!HHB3x")
_INSTRUCTION_WRITE_METADATA = struct.Struct("!HH4xQQ")
_INSTRUCTION_METER = struct.Struct("!HHI")
_ROLE_REQUEST = struct.Struct("!I4xQ")  # role, pad, generation_id
_ASYNC_CONFIG = struct.Struct("!6I")  # packet-in, port-status, flow-removed masks: (master/equal, slave) each

OFPT_PACKET_OUT, OFPT_FLOW_MOD, OFPT_GROUP_MOD, OFPT_METER_MOD = 13, 14, 15, 29
OFPT_ROLE_REQUEST, OFPT_SET_ASYNC = 24, 28
_OFPMT_OXM = 1
_OFPAT_OUTPUT, _OFPAT_GROUP = 0, 22
_OFPIT_GOTO_TABLE, _OFPIT_WRITE_METADATA, _OFPIT_APPLY_ACTIONS, _OFPIT_METER = 1, 2, 4, 6
_OFPTT_ALL = 0xFF
_OFPFF_SEND_FLOW_REM = 1
_OFPGT_ALL, _OFPGT_SELECT = 0, 1
_METER_COMMANDS = {of.MeterCommand.ADD: 0, of.MeterCommand.MODIFY: 1, of.MeterCommand.DELETE: 2}
_OFPMF_PKTPS, _OFPMF_BURST = 2, 4
_OFPMBT_DROP = 1
_ALL_ONES = (1 << 64) - 1
_NO_BUFFER_LEN = of.Output(0).max_len  # an output action's max_len: the whole packet

_FLOW_COMMANDS = {of.FlowCommand.ADD: 0, of.FlowCommand.DELETE: 3, of.FlowCommand.DELETE_STRICT: 4}
_GROUP_COMMANDS = {of.GroupCommand.ADD: 0, of.GroupCommand.MODIFY: 1, of.GroupCommand.DELETE: 2}
_GROUP_TYPES = {of.GroupType.ALL: _OFPGT_ALL, of.GroupType.SELECT: _OFPGT_SELECT}

# OXM headers (class OPENFLOW_BASIC, field, no mask, length), in OXM field order.
_OXM_IN_PORT = struct.Struct("!II")
_OXM_METADATA = struct.Struct("!IQ")
_OXM_ETH = struct.Struct("!I6s")
_OXM_ETH_TYPE = struct.Struct("!IH")
_IN_PORT, _METADATA, _ETH_DST, _ETH_SRC, _ETH_TYPE = 0x80000004, 0x80000408, 0x80000606, 0x80000806, 0x80000A02


def _pad8(length: int) -> int:
    return (length + 7) // 8 * 8 - length


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def match(m: of.Match) -> bytes:
    """An ``ofp_match`` (OXM), padded to a multiple of 8 octets."""
    fields = b""
    if m.in_port is not None:
        fields += _OXM_IN_PORT.pack(_IN_PORT, m.in_port)
    if m.metadata is not None:
        fields += _OXM_METADATA.pack(_METADATA, m.metadata)
    if m.eth_dst is not None:
        fields += _OXM_ETH.pack(_ETH_DST, _mac(m.eth_dst))
    if m.eth_src is not None:
        fields += _OXM_ETH.pack(_ETH_SRC, _mac(m.eth_src))
    if m.eth_type is not None:
        fields += _OXM_ETH_TYPE.pack(_ETH_TYPE, m.eth_type)
    fields += m.other_oxm
    length = _MATCH_HEADER.size + len(fields)
    return _MATCH_HEADER.pack(_OFPMT_OXM, length) + fields + bytes(_pad8(length))


def action(a: of.Action) -> bytes:
    """One action: output to a port, or a group."""
    if isinstance(a, of.Group):
        return _ACTION_GROUP.pack(_OFPAT_GROUP, _ACTION_GROUP.size, a.group_id)
    return _ACTION_OUTPUT.pack(_OFPAT_OUTPUT, _ACTION_OUTPUT.size, a.port, a.max_len)


def _instructions(msg: of.FlowMod) -> bytes:
    out = b""
    if msg.meter is not None:
        out += _INSTRUCTION_METER.pack(_OFPIT_METER, _INSTRUCTION_METER.size, msg.meter)
    if msg.actions:
        actions = b"".join(action(a) for a in msg.actions)
        out += _INSTRUCTION_HEADER.pack(_OFPIT_APPLY_ACTIONS, _INSTRUCTION_HEADER.size + len(actions)) + actions
    if msg.write_metadata is not None:
        out += _INSTRUCTION_WRITE_METADATA.pack(
            _OFPIT_WRITE_METADATA, _INSTRUCTION_WRITE_METADATA.size, msg.write_metadata, _ALL_ONES
        )
    if msg.goto is not None:
        out += _INSTRUCTION_GOTO.pack(_OFPIT_GOTO_TABLE, _INSTRUCTION_GOTO.size, int(msg.goto))
    return out


def _message(msg_type: int, body: bytes, xid: int) -> bytes:
    return _HEADER.pack(OFP_VERSION, msg_type, _HEADER.size + len(body), xid) + body


def _refuse_unreadable(msg: of.FlowMod | of.GroupMod | of.MeterMod) -> None:
    if msg.unreadable:
        raise ValueError(f"cannot encode an entry read back with unreadable parts: {msg!r}")


def _flow_mod(msg: of.FlowMod) -> bytes:
    if msg.command is of.FlowCommand.ADD:
        _refuse_unreadable(msg)
    fixed = _FLOW_MOD.pack(
        msg.cookie,
        msg.cookie_mask,
        _OFPTT_ALL if msg.table is None else int(msg.table),
        _FLOW_COMMANDS[msg.command],
        msg.idle_timeout,
        msg.hard_timeout,
        msg.priority,
        OFP_NO_BUFFER,
        msg.out_port,
        msg.out_group,
        _OFPFF_SEND_FLOW_REM if msg.notify_removal else 0,
    )
    instructions = _instructions(msg) if msg.command is of.FlowCommand.ADD else b""
    return fixed + match(msg.match) + instructions


def _output_bucket(port: int, weight: int, watch_port: int) -> bytes:
    return _BUCKET_OUTPUT.pack(_BUCKET_OUTPUT.size, weight, watch_port, of.OFPG_ANY,
                               _OFPAT_OUTPUT, _ACTION_OUTPUT.size, port, _NO_BUFFER_LEN)


def _group_bucket(group_id: int) -> bytes:
    return _BUCKET_GROUP.pack(_BUCKET_GROUP.size, 0, of.OFPP_ANY, of.OFPG_ANY, _OFPAT_GROUP, _ACTION_GROUP.size, group_id)


def _group_mod(msg: of.GroupMod) -> bytes:
    if msg.command is not of.GroupCommand.DELETE:
        _refuse_unreadable(msg)
    if msg.group_type is of.GroupType.SELECT:
        buckets = [_output_bucket(p, 1, p) for p in msg.ports]
    else:  # weights are for SELECT groups only: Open vSwitch refuses an ALL group with one
        buckets = [_output_bucket(p, 0, of.OFPP_ANY) for p in msg.ports]
        buckets += [_group_bucket(g) for g in msg.groups]
    header = _GROUP_MOD.pack(_GROUP_COMMANDS[msg.command], _GROUP_TYPES[msg.group_type], msg.group_id)
    return header + b"".join(buckets)


def _meter_mod(msg: of.MeterMod) -> bytes:
    command = _METER_COMMANDS[msg.command]
    if msg.command is of.MeterCommand.DELETE:
        return _METER_MOD.pack(command, 0, msg.meter_id)
    _refuse_unreadable(msg)
    band = _METER_BAND_DROP.pack(_OFPMBT_DROP, _METER_BAND_DROP.size, msg.rate_pps, msg.burst)
    return _METER_MOD.pack(command, _OFPMF_PKTPS | _OFPMF_BURST, msg.meter_id) + band


def _packet_out(msg: of.PacketOut) -> bytes:
    actions = _ACTION_OUTPUT.pack(_OFPAT_OUTPUT, _ACTION_OUTPUT.size, msg.port, _NO_BUFFER_LEN)
    return _PACKET_OUT.pack(OFP_NO_BUFFER, of.OFPP_CONTROLLER, len(actions)) + actions + msg.data


def _role_request(msg: of.RoleRequest) -> bytes:
    return _ROLE_REQUEST.pack(int(msg.role), msg.generation_id)


def _set_async(msg: of.SetAsync) -> bytes:
    return _ASYNC_CONFIG.pack(*msg.packet_in_mask, *msg.port_status_mask, *msg.flow_removed_mask)


def encode(msg: of.Message | of.ControlMessage, xid: int = 0) -> bytes:
    """One message as OpenFlow 1.3 bytes, header included."""
    if isinstance(msg, of.FlowMod):
        return _message(OFPT_FLOW_MOD, _flow_mod(msg), xid)
    if isinstance(msg, of.PacketOut):
        return _message(OFPT_PACKET_OUT, _packet_out(msg), xid)
    if isinstance(msg, of.GroupMod):
        return _message(OFPT_GROUP_MOD, _group_mod(msg), xid)
    if isinstance(msg, of.MeterMod):
        return _message(OFPT_METER_MOD, _meter_mod(msg), xid)
    if isinstance(msg, of.RoleRequest):
        return _message(OFPT_ROLE_REQUEST, _role_request(msg), xid)
    if isinstance(msg, of.SetAsync):
        return _message(OFPT_SET_ASYNC, _set_async(msg), xid)
    raise TypeError(f"not an OpenFlow message value: {msg!r}")


def encode_all(msgs: Iterable[of.Message | of.ControlMessage], first_xid: int) -> tuple[bytes, int]:
    """Messages as one buffer, with xids counting up from ``first_xid``; returns (bytes, next xid)."""
    xid = first_xid
    parts = []
    for msg in msgs:
        parts.append(encode(msg, xid))
        xid = (xid + 1) & 0xFFFFFFFF
    return b"".join(parts), xid
