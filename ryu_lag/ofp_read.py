"""What a switch reports it has, as ``ryu_lag.openflow`` values: the shell side of resuming.

Each function takes the body entries of one multipart reply as Ryu parses them and returns
every entry as the ADD that would create it, without counters, so that
``LagSwitch.resume`` can compare it with what it wants. What the model cannot say (an
action, instruction, bucket, band or flag ryu_lag never sends) is kept in the entry's
``unreadable`` text, and match fields it does not name (or names unmasked) in the match's
``other_oxm`` bytes: such an entry never equals a wanted one, so resume replaces or
deletes it, and a strict delete still names the exact flow. Nothing here raises for an
entry it does not understand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import openflow as of
from ryu_lag.switching import COOKIE, COOKIE_MASK

_ALL_ONES = (1 << 64) - 1
_TABLES = {int(t) for t in of.Table}
_GROUP_TYPES = {ofp.OFPGT_SELECT: of.GroupType.SELECT, ofp.OFPGT_ALL: of.GroupType.ALL}
_METER_FLAGS = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
_NAMED_FIELDS = {"in_port", "metadata", "eth_src", "eth_dst", "eth_type"}


def _table(table_id: int) -> of.Table | int:
    return of.Table(table_id) if table_id in _TABLES else table_id


def match_from_ryu(match: Any) -> of.Match:
    """A Ryu OFPMatch as a Match: the fields ryu_lag uses by name, any other (or masked) field as OXM bytes."""
    named: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in match.items():
        if name in _NAMED_FIELDS and not isinstance(value, tuple):
            named[name] = value.lower() if isinstance(value, str) else value
        else:
            other[name] = value
    other_oxm = b""
    if other:
        extra = parser.OFPMatch(**other)
        buf = bytearray()
        extra.serialize(buf, 0)
        other_oxm = bytes(buf[4:extra.length])  # the TLVs: no header, no padding
    return of.Match(other_oxm=other_oxm, **named)


def _action(action: Any) -> of.Action | None:
    if isinstance(action, parser.OFPActionOutput):
        return of.Output(action.port, action.max_len)
    if isinstance(action, parser.OFPActionGroup):
        return of.Group(action.group_id)
    return None


def flow_from_stats(stats: Any) -> of.FlowMod:
    """One ``OFPFlowStats`` as the ADD that would create it."""
    unreadable: list[str] = []
    actions: tuple[of.Action, ...] = ()
    goto: of.Table | None = None
    write_metadata: int | None = None
    meter: int | None = None
    seen: set[int] = set()
    for inst in stats.instructions:
        kind = getattr(inst, "type", None)
        if kind in seen:
            unreadable.append(f"instruction {kind} twice")
        seen.add(kind)
        if isinstance(inst, parser.OFPInstructionActions) and kind == ofp.OFPIT_APPLY_ACTIONS:
            read = [_action(a) for a in inst.actions]
            actions = tuple(a for a in read if a is not None)
            if len(actions) != len(read):
                unreadable.append(f"apply-actions {inst.actions}")
        elif isinstance(inst, parser.OFPInstructionGotoTable) and inst.table_id in _TABLES:
            goto = of.Table(inst.table_id)
        elif isinstance(inst, parser.OFPInstructionWriteMetadata) and inst.metadata_mask == _ALL_ONES:
            write_metadata = inst.metadata
        elif isinstance(inst, parser.OFPInstructionMeter):
            meter = inst.meter_id
        else:
            unreadable.append(f"instruction {inst}")
    if stats.flags & ~(ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_RESET_COUNTS | ofp.OFPFF_NO_PKT_COUNTS
                       | ofp.OFPFF_NO_BYT_COUNTS | ofp.OFPFF_CHECK_OVERLAP):
        unreadable.append(f"flags {stats.flags:#x}")
    if stats.table_id not in _TABLES:
        unreadable.append(f"table {stats.table_id}")
    return of.FlowMod(
        table=_table(stats.table_id),
        priority=stats.priority,
        match=match_from_ryu(stats.match),
        actions=actions,
        goto=goto,
        write_metadata=write_metadata,
        meter=meter,
        idle_timeout=stats.idle_timeout,
        hard_timeout=stats.hard_timeout,
        cookie=stats.cookie,
        notify_removal=bool(stats.flags & ofp.OFPFF_SEND_FLOW_REM),
        unreadable="; ".join(unreadable),
    )


def flows_from_stats(body: Iterable[Any]) -> list[of.FlowMod]:
    """The flows of ours (cookie selected by ``COOKIE_MASK``) among ``OFPFlowStats`` entries."""
    return [flow_from_stats(stats) for stats in body if stats.cookie & COOKIE_MASK == COOKIE]


def group_from_desc(desc: Any) -> of.GroupMod:
    """One ``OFPGroupDescStats`` as the ADD that would create it (in the shape ``ofp_wire`` sends)."""
    group_type = _GROUP_TYPES.get(desc.type)
    unreadable: list[str] = [] if group_type is not None else [f"group type {desc.type}"]
    select = group_type is of.GroupType.SELECT
    ports: list[int] = []
    groups: list[int] = []
    for bucket in desc.buckets:
        action = _action(bucket.actions[0]) if len(bucket.actions) == 1 else None
        if isinstance(action, of.Output) and action == of.Output(action.port):
            if (bucket.weight, bucket.watch_port) != ((1, action.port) if select else (0, ofp.OFPP_ANY)):
                unreadable.append(f"bucket weight {bucket.weight} watch port {bucket.watch_port}")
            ports.append(action.port)
        elif isinstance(action, of.Group) and not select and (bucket.weight, bucket.watch_port) == (0, ofp.OFPP_ANY):
            groups.append(action.group_id)
        else:
            unreadable.append(f"bucket {bucket}")
            continue
        if bucket.watch_group != ofp.OFPG_ANY:
            unreadable.append(f"bucket watch group {bucket.watch_group}")
    return of.GroupMod(of.GroupCommand.ADD, desc.group_id, tuple(ports), group_type or of.GroupType.ALL,
                       tuple(groups), unreadable="; ".join(unreadable))


def groups_from_desc(body: Iterable[Any]) -> list[of.GroupMod]:
    """Every group among ``OFPGroupDescStats`` entries."""
    return [group_from_desc(desc) for desc in body]


def meter_from_config(config: Any) -> of.MeterMod:
    """One ``OFPMeterConfigStats`` as the ADD that would create it."""
    bands = config.bands
    if config.flags == _METER_FLAGS and len(bands) == 1 and isinstance(bands[0], parser.OFPMeterBandDrop):
        return of.MeterMod(config.meter_id, bands[0].rate, bands[0].burst_size)
    return of.MeterMod(config.meter_id, unreadable=f"flags {config.flags:#x} bands {bands}")


def meters_from_config(body: Iterable[Any]) -> list[of.MeterMod]:
    """Every meter among ``OFPMeterConfigStats`` entries."""
    return [meter_from_config(config) for config in body]
