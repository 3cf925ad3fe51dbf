"""A fake OpenFlow 1.3 switch for unit tests.

It applies ``ryu_lag.openflow`` messages the way a switch would and answers behaviour
questions ("where would this frame go?") so tests need not look at message bytes:

- flow tables with priorities; a lookup that matches two flows of the same top priority
  is an error (the switch's choice would be undefined);
- instructions: meter, apply-actions, write-metadata, goto (forward only);
- ADD replaces a flow with the same table, priority and match; DELETE (non-strict: the
  flow's match is at least as specific) and DELETE_STRICT (same priority and match), both
  filtered by cookie/mask, out_port and out_group;
- SELECT groups whose buckets output to a port and are live while that port is in
  ``live_ports``; a deterministic live bucket is picked by a hash of (src, dst);
- ALL groups: every bucket, each outputting to a port or chaining another group;
- group rules as OpenFlow 1.3: a flow or a group may not name a missing group (nor a
  missing meter), chains may not loop, a group another group chains cannot be deleted
  (OFPGMFC_CHAINED_GROUP), and deleting a group deletes the flows that send to it;
- output to the input port is not delivered, also from inside a group (only OFPP_IN_PORT
  would do that); every copy a frame leaves by is counted, so duplicates show;
- meters: ADD (refused if the id exists), MODIFY (refused if it does not), DELETE (of one
  id or OFPM_ALL; deletes the flows that use it);
- idle/hard timeouts against a fake clock (``advance``); removals of flows asking for
  notification (by timeout or by delete) are queued as ``FlowRemoved`` for the test to hand
  to the controller logic;
- read back: ``observed()`` is what a switch's flow, group and meter dumps would tell the
  controller (an ``ObservedSwitch``), ``content()`` the whole table without counters, for
  comparing two switches.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from ryu_lag.openflow import (
    OFPG_ALL,
    OFPG_ANY,
    OFPM_ALL,
    OFPP_ANY,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    FlowCommand,
    FlowMod,
    Group,
    GroupCommand,
    GroupMod,
    GroupType,
    Match,
    Message,
    MeterCommand,
    MeterMod,
    ObservedSwitch,
    Output,
    PacketOut,
    Table,
)
from ryu_lag.switching import COOKIE, COOKIE_MASK


class FakeOFError(Exception):
    """The switch would have answered this message with an OpenFlow error."""


@dataclass
class FlowEntry:
    """An installed flow."""

    mod: FlowMod
    installed_at: float
    last_hit: float

    @property
    def table(self) -> Table:
        return self.mod.table

    @property
    def priority(self) -> int:
        return self.mod.priority

    @property
    def match(self) -> Match:
        return self.mod.match

    @property
    def cookie(self) -> int:
        return self.mod.cookie


@dataclass(frozen=True)
class FlowRemoved:
    """A flow-removed notification (only for flows installed with ``notify_removal``)."""

    table: Table
    priority: int
    match: Match
    cookie: int
    reason: str  # "idle_timeout", "hard_timeout", "delete" or "group_delete"


@dataclass(frozen=True)
class GroupEntry:
    """An installed group: the ports its buckets output to and the groups they chain."""

    group_type: GroupType
    ports: tuple[int, ...]
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class ForwardResult:
    """What the switch did with one frame."""

    copies: tuple[int, ...]  # every port a copy left by, in order; a port twice is a duplicate
    controller: bool
    meter: int | None  # the meter applied on the way, if any

    @property
    def outputs(self) -> frozenset[int]:
        """The ports the frame left by."""
        return frozenset(self.copies)

    @property
    def dropped(self) -> bool:
        """Neither output anywhere nor sent to the controller."""
        return not self.outputs and not self.controller


@dataclass(frozen=True)
class _Frame:
    in_port: int
    metadata: int
    eth_src: str
    eth_dst: str
    eth_type: int


_NAMED_FIELDS = [f.name for f in fields(Match) if f.name != "other_oxm"]


def _matches(match: Match, frame: _Frame) -> bool:
    """Whether a frame matches; fields the model does not name (``other_oxm``) never match here."""
    return not match.other_oxm and all(
        getattr(match, name) is None or getattr(match, name) == getattr(frame, name) for name in _NAMED_FIELDS
    )


def _covers(general: Match, specific: Match) -> bool:
    """Whether every field ``general`` sets is set to the same value in ``specific``."""
    return general.other_oxm in (b"", specific.other_oxm) and all(
        getattr(general, name) is None or getattr(general, name) == getattr(specific, name) for name in _NAMED_FIELDS
    )


@dataclass(frozen=True)
class TableContent:
    """A switch's flows, groups and meters, each as the ADD that creates it: no counters, no order."""

    flows: frozenset[FlowMod]
    groups: dict[int, GroupMod]
    meters: dict[int, MeterMod]


class FakeOFTable:
    """An OpenFlow 1.3 switch's tables, groups and meters, driven by messages."""

    def __init__(self, live_ports: Iterable[int] = ()) -> None:
        self.live_ports: set[int] = set(live_ports)
        self.flows: list[FlowEntry] = []
        self.groups: dict[int, GroupEntry] = {}
        self.meters: dict[int, MeterMod] = {}
        self.packet_outs: list[PacketOut] = []
        self.now = 0.0
        self._removed: list[FlowRemoved] = []

    # -- applying messages -------------------------------------------------------------------

    def apply(self, msgs: Iterable[Message]) -> None:
        """Apply messages in order; raises FakeOFError where the switch would refuse one."""
        for msg in msgs:
            if isinstance(msg, FlowMod):
                self._flow_mod(msg)
            elif isinstance(msg, GroupMod):
                self._group_mod(msg)
            elif isinstance(msg, MeterMod):
                if msg.command is MeterCommand.DELETE:
                    gone = set(self.meters) if msg.meter_id == OFPM_ALL else {msg.meter_id}
                    for meter_id in gone:
                        self.meters.pop(meter_id, None)
                    self._remove([e for e in self.flows if e.mod.meter in gone], "meter_delete")
                elif msg.command is MeterCommand.ADD and msg.meter_id in self.meters:
                    raise FakeOFError(f"meter {msg.meter_id} exists")
                elif msg.command is MeterCommand.MODIFY and msg.meter_id not in self.meters:
                    raise FakeOFError(f"no meter {msg.meter_id}")
                else:
                    self.meters[msg.meter_id] = replace(msg, command=MeterCommand.ADD)
            elif isinstance(msg, PacketOut):
                self.packet_outs.append(msg)
            else:
                raise TypeError(f"not a message: {msg!r}")

    def _flow_mod(self, mod: FlowMod) -> None:
        if not isinstance(mod.table, Table):
            raise FakeOFError(f"bad table {mod.table!r}")
        if mod.command is FlowCommand.ADD:
            self._add(mod)
            return
        strict = mod.command is FlowCommand.DELETE_STRICT
        doomed = [
            e for e in self.flows
            if e.table == mod.table
            and e.cookie & mod.cookie_mask == mod.cookie & mod.cookie_mask
            and (e.match == mod.match and e.priority == mod.priority if strict else _covers(mod.match, e.match))
            and (mod.out_port == OFPP_ANY
                 or any(isinstance(a, Output) and a.port == mod.out_port for a in e.mod.actions))
            and (mod.out_group == OFPG_ANY or Group(mod.out_group) in e.mod.actions)
        ]
        self._remove(doomed, "delete")

    def _add(self, mod: FlowMod) -> None:
        if mod.goto is not None and mod.goto <= mod.table:
            raise FakeOFError(f"goto {mod.goto!r} from {mod.table!r} is not forward")
        if mod.meter is not None and mod.meter not in self.meters:
            raise FakeOFError(f"no meter {mod.meter}")
        for action in mod.actions:
            if isinstance(action, Group) and action.group_id not in self.groups:
                raise FakeOFError(f"no group {action.group_id}")
        if not 0 <= mod.idle_timeout <= 0xFFFF or not 0 <= mod.hard_timeout <= 0xFFFF:
            raise FakeOFError("timeout out of range")
        self.flows = [
            e for e in self.flows
            if not (e.table == mod.table and e.priority == mod.priority and e.match == mod.match)
        ]
        self.flows.append(FlowEntry(replace(mod, cookie_mask=0, out_port=OFPP_ANY, out_group=OFPG_ANY),
                                    self.now, self.now))

    def _group_mod(self, mod: GroupMod) -> None:
        if mod.command is GroupCommand.DELETE:
            self._delete_group(mod.group_id)
            return
        if mod.command is GroupCommand.ADD and mod.group_id in self.groups:
            raise FakeOFError(f"group {mod.group_id} exists")
        if mod.command is GroupCommand.MODIFY and mod.group_id not in self.groups:
            raise FakeOFError(f"no group {mod.group_id}")
        if mod.group_type is GroupType.SELECT and mod.groups:
            raise FakeOFError(f"SELECT group {mod.group_id}: buckets here only output to ports")
        if missing := [g for g in mod.groups if g not in self.groups]:
            raise FakeOFError(f"group {mod.group_id} chains missing groups {missing}")
        if mod.group_id in self._reachable(mod.groups):
            raise FakeOFError(f"group {mod.group_id} would chain itself (a loop)")
        self.groups[mod.group_id] = GroupEntry(mod.group_type, mod.ports, mod.groups)

    def _delete_group(self, group_id: int) -> None:
        gone = set(self.groups) if group_id == OFPG_ALL else {group_id} & set(self.groups)
        if chained_by := sorted(g for g, entry in self.groups.items() if g not in gone and gone & set(entry.groups)):
            raise FakeOFError(f"group {group_id} is chained by groups {chained_by}")
        for gid in gone:
            del self.groups[gid]
        self._remove(
            [e for e in self.flows if any(isinstance(a, Group) and a.group_id in gone for a in e.mod.actions)],
            "group_delete",
        )

    def _reachable(self, groups: Iterable[int]) -> set[int]:
        """The groups these groups chain, directly or not, themselves included."""
        seen: set[int] = set()
        todo = list(groups)
        while todo:
            group_id = todo.pop()
            if group_id not in seen:
                seen.add(group_id)
                todo.extend(self.groups[group_id].groups)
        return seen

    def _remove(self, doomed: list[FlowEntry], reason: str) -> None:
        for entry in doomed:
            self.flows.remove(entry)
            if entry.mod.notify_removal:
                self._removed.append(FlowRemoved(entry.table, entry.priority, entry.match, entry.cookie, reason))

    # -- reading back ------------------------------------------------------------------------

    def observed(self, cookie: int = COOKIE, cookie_mask: int = COOKIE_MASK) -> ObservedSwitch:
        """What the switch's dumps would report: the flows ``cookie``/``cookie_mask`` select,
        every group and every meter, each as its ADD."""
        content = self.content()
        return ObservedSwitch(
            flows=tuple(e.mod for e in self.flows if e.cookie & cookie_mask == cookie & cookie_mask),
            groups=tuple(content.groups[g] for g in sorted(content.groups)),
            meters=tuple(content.meters[m] for m in sorted(content.meters)),
        )

    def content(self) -> TableContent:
        """Every flow, group and meter as the ADD that creates it (equal tables compare equal)."""
        return TableContent(
            flows=frozenset(e.mod for e in self.flows),
            groups={
                g: GroupMod(GroupCommand.ADD, g, entry.ports, entry.group_type, entry.groups)
                for g, entry in self.groups.items()
            },
            meters=dict(self.meters),
        )

    # -- time --------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the clock on; flows past their idle or hard timeout are removed."""
        self.now += seconds
        for entry in list(self.flows):
            idle = entry.mod.idle_timeout and self.now - entry.last_hit >= entry.mod.idle_timeout
            hard = entry.mod.hard_timeout and self.now - entry.installed_at >= entry.mod.hard_timeout
            if idle or hard:
                self._remove([entry], "idle_timeout" if idle else "hard_timeout")

    def take_removed(self) -> list[FlowRemoved]:
        """The flow-removed notifications queued since the last call."""
        removed, self._removed = self._removed, []
        return removed

    # -- questions ---------------------------------------------------------------------------

    def table(self, table: Table) -> list[FlowEntry]:
        """The flows installed in one table."""
        return [e for e in self.flows if e.table == table]

    def select_groups(self) -> dict[int, tuple[int, ...]]:
        """The SELECT groups (bonds): group id -> ports of their buckets."""
        return {g: entry.ports for g, entry in self.groups.items() if entry.group_type is GroupType.SELECT}

    def forward(self, in_port: int, eth_src: str, eth_dst: str, eth_type: int = 0x0800) -> ForwardResult:
        """Run a frame through the pipeline."""
        frame = _Frame(in_port, 0, eth_src.lower(), eth_dst.lower(), eth_type)
        copies: list[int] = []
        controller = False
        meter: int | None = None
        table: Table | None = Table.INGRESS
        while table is not None:
            entry = self._lookup(table, frame)
            if entry is None:
                break  # no table-miss flow: drop
            entry.last_hit = self.now
            if entry.mod.meter is not None:
                meter = entry.mod.meter
            for action in entry.mod.actions:
                if isinstance(action, Group):
                    copies += [p for p in self._group_outputs(action.group_id, frame) if p != in_port]
                elif action.port == OFPP_CONTROLLER:
                    controller = True
                elif action.port == OFPP_IN_PORT:
                    copies.append(in_port)
                elif action.port != in_port:
                    copies.append(action.port)
            if entry.mod.write_metadata is not None:
                frame = _Frame(in_port, entry.mod.write_metadata, frame.eth_src, frame.eth_dst, eth_type)
            table = entry.mod.goto
        return ForwardResult(tuple(copies), controller, meter)

    def _lookup(self, table: Table, frame: _Frame) -> FlowEntry | None:
        hits = [e for e in self.table(table) if _matches(e.match, frame)]
        if not hits:
            return None
        top = max(e.priority for e in hits)
        best = [e for e in hits if e.priority == top]
        if len(best) > 1:
            raise FakeOFError(f"ambiguous lookup in {table!r} at priority {top}: {[e.match for e in best]}")
        return best[0]

    def _group_outputs(self, group_id: int, frame: _Frame) -> list[int]:
        """The ports a group sends copies to: one live bucket's (SELECT), or every bucket's (ALL)."""
        group = self.groups[group_id]
        if group.group_type is GroupType.SELECT:
            live = [p for p in group.ports if p in self.live_ports]
            if not live:
                return []
            return [live[zlib.crc32(f"{frame.eth_src}>{frame.eth_dst}".encode()) % len(live)]]
        copies = list(group.ports)
        for chained in group.groups:
            copies += self._group_outputs(chained, frame)
        return copies
