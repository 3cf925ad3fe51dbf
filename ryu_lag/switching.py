"""The LAG-aware learning switch, as pure decisions returning OpenFlow messages.

One ``LagSwitch`` per datapath. A bond is ONE logical port; a plain port is its own. The
pipeline (every flow carries a cookie selected by ``COOKIE_MASK``):

- ``INGRESS``: a LACPDU from a bond member goes to the controller (through the member's
  own meter when the switch has meters: a flood on one member reaches the controller at
  the meter's rate and cannot use up the other members' share), from any other port it is
  dropped. Data from a collecting member or a plain port gets ``metadata = logical port``
  and goes on; anything else is dropped. A port removed from a live bond is *leaving*
  until ``release``: its LACPDUs still go to the controller, everything else is dropped.
- ``ETH_SRC``: a known (logical port, source MAC) goes on; a miss of a logical port also
  punts to learn, through that port's *learn meter* when the switch has meters (see below),
  while learning is on; the table-miss only goes on.
- ``ETH_DST``: a known destination goes to its port or its bond's SELECT group (never back
  into the bond it came from); otherwise the input logical port's flood flow sends the
  frame to a flood group.

Groups and meters of ours have ids in one block, ``OUR_IDS`` (0x4C410000) to
``OUR_IDS | 0xFFFF`` (Open vSwitch's userspace datapath takes any meter id below OFPM_MAX);
any other id belongs to another application and is never touched:

- ``g`` in ``BOND_GROUP_MIN..BOND_GROUP_MAX`` (0x4C410001..0x4C417FFF): bond ``g``'s SELECT
  group, one bucket per distributing member (the service hands out the smallest free id
  and keeps it).
- ``FLOOD_PLAIN`` (0x4C410000, ALL): outputs to every plain port.
- ``FLOOD_ALL`` (0x4C418000, ALL): chains ``FLOOD_PLAIN`` and the SELECT group of every bond
  that has a distributing member. Every plain port floods through it: the switch never
  outputs a frame to its own input port, in a group or not, so the flood skips the sender.
- ``flood_from(g) = g | 0x8000`` (ALL): chains ``FLOOD_PLAIN`` and every OTHER distributing
  bond's SELECT group; bond ``g`` floods through it.
- Meter ``lacp_meter(port) = OUR_IDS | port``: the LACP punts of a member or leaving port.
- Meter ``learn_meter(logical)``: the learning punts of a logical port, at ``learn_meter_pps``:
  ``0x4C420000 | port`` for a plain port (ports above 0xFFFF punt unmetered), ``0x4C430000 |
  (g & 0x7FFF)`` for bond ``g``.
- Meter ``bfd_meter(port) = 0x4C440000 | port``: the BFD punts of a member of a bond running
  BFD, at ``BFD_METER_PPS``. ``is_our_meter`` knows all four blocks (0x4C41..0x4C44xxxx).

BFD: a member of a bond running BFD punts its BFD control packets (IPv4 to the bond's BFD
destination MAC) to the controller at ``_PRIO_BFD_PUNT``, above its ingress rule, so they
reach the controller whether it collects or not and never take the learning path.

Learning under a flood of new source MACs. A meter's drop band drops the whole packet in
the flow that names it, not only the copy to the controller, and OpenFlow 1.3 has no
per-action meter: so a frame from an unknown source beyond its port's learn rate is
*dropped*, not forwarded, until its source is learned. The designs considered:

- one metered miss for every port (today's single flow, metered): one port's flood uses up
  every port's share, and the drops hit every port's new hosts. Rejected.
- a learn table after ETH_DST (forward first with apply-actions, then punt through the meter):
  drops only the copy, but needs a fourth table and a metadata bit that every ETH_DST flow
  (floods, hairpins) would have to match twice. Not taken now.
- the metered miss *per logical port* (taken): a flood costs only its own port's unknown
  sources; known sources are never metered (their ETH_SRC flow matches first), other ports
  and bonds learn as before, and a host that is new on a quiet port loses nothing (the first
  frame is punted within the rate and learned). Past the rate on the flooded port, frames of
  new sources are dropped until learned: a legitimate new host on the flooded port competes
  with the flood for the rate (each of its frames passes with odds rate/flood rate) and is
  forwarded at line rate once one frame was let through and learned.

Bounded table: at most ``max_macs`` learned MACs per switch. When a new source would pass
it, learning pauses: every logical port's learn punt is deleted, so unknown sources go on
unmetered and flood (forwarding stays correct, nothing is learned); the refused source is
counted in ``learn_dropped[TABLE_FULL]``. Learning resumes once ageing or a flush brings
the table back to ``LEARN_RESUME_FRACTION`` of ``max_macs``. MACs already learned move
between ports as before.

A switch that connects is resumed, not reset (``resume``): the model is set to the desired
state at once, learned MACs come back from the learned flows the switch still has, and
only the differences are sent (a Kubernetes-style reconcile: running it again on its own
result sends nothing). Our flows are told apart by cookie, our groups and meters by id.

Rules this module keeps:

- A flood leaves every other logical port once: a bond through its SELECT group, which
  picks one live member, and only while the bond has a distributing member.
- Member state changes edit only the member's ingress rule and the group, never learned
  MACs; the flood groups chaining bonds change only when a bond gains its first or loses
  its last distributing member. Flood flows never change while their port or bond exists;
  ``FLOOD_PLAIN`` changes only when plain ports come or go.
- A group exists before a flow or group refers to it, and a group is deleted only once
  nothing refers to it.
- Static flows are kept per owner (a port, a bond) and groups by id; an event recomputes
  only the owners and groups it touches and sends only what differs. Learned flows carry a
  per-logical-port cookie so that forgetting a port's MACs deletes exactly their flows.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ryu_lag.config import MAX_MEMBER_PORT
from ryu_lag.openflow import (
    ETH_TYPE_IPV4,
    ETH_TYPE_SLOW,
    OFPP_CONTROLLER,
    SLOW_PROTOCOLS_MAC,
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
    Table,
)

COOKIE = 0x4C41_4700_0000_0000
"""Cookie of the base pipeline; "LAG" in the top three bytes."""
COOKIE_MASK = 0xFFFF_FF00_0000_0000
"""Selects every flow of ours (static and learned)."""
_LEARNED = 1 << 39
"""Cookie bit of learned flows; the low 33 bits hold the logical port the MAC was learned on."""
_ALL_BITS = (1 << 64) - 1

BOND_BASE = 1 << 32
"""A bond's logical id is ``BOND_BASE | group_id``; a plain port's is its port number."""
OUR_IDS = 0x4C41_0000
"""The block of group ids and of meter ids that are ryu_lag's ("LA" in the top two bytes):
``OUR_IDS`` to ``OUR_IDS | 0xFFFF``. Other applications' small ids never fall in it."""
_ID_BLOCK_MASK = 0xFFFF_0000
BOND_GROUP_MIN = OUR_IDS | 0x0001
BOND_GROUP_MAX = OUR_IDS | 0x7FFF
"""Bonds' SELECT groups have ids BOND_GROUP_MIN..BOND_GROUP_MAX (the service hands out the smallest free)."""
_FLOOD_FROM = 0x8000
"""``g | _FLOOD_FROM`` is the ALL group flooding frames that came in on bond ``g``."""
FLOOD_PLAIN = OUR_IDS
"""The ALL group outputting to every plain port."""
FLOOD_ALL = OUR_IDS | _FLOOD_FROM
"""The ALL group chaining FLOOD_PLAIN and every distributing bond: floods from plain ports."""
MIN_LACP_METER_PPS = 3
"""The lowest LACP meter rate: 802.1AX lets an actor send 3 LACPDUs in a second."""
DEFAULT_LACP_METER_PPS = 20
"""LACPDUs a second (and burst) a member may punt by default: LACP's 3 with room to spare."""
DEFAULT_LEARN_METER_PPS = 100
"""Frames from unknown sources a second (and burst) a logical port may punt to learn, by default."""
MIN_LEARN_METER_PPS = 1
DEFAULT_MAX_MACS = 8192
"""Learned MACs per switch by default: four times Open vSwitch's own default MAC table (2048 per bridge)."""
LEARN_RESUME_FRACTION = 0.9
"""Learning paused at ``max_macs`` resumes once the table is back to this fraction of it."""
TABLE_FULL = "table_full"
"""Reason a source was not learned: the switch's MAC table held ``max_macs``."""
QUEUE_FULL = "queue_full"
"""Reason a source was not learned: the controller's learning queue was full (counted by the shell)."""
LEARN_DROP_REASONS = (TABLE_FULL, QUEUE_FULL)
_LEARN_PLAIN_IDS = 0x4C42_0000
"""Learn meters of plain ports: ``_LEARN_PLAIN_IDS | port`` for ports up to 0xFFFF."""
_LEARN_BOND_IDS = 0x4C43_0000
"""Learn meters of bonds: ``_LEARN_BOND_IDS | (group id & 0x7FFF)``."""
_BFD_IDS = 0x4C44_0000
"""BFD meters of members: ``_BFD_IDS | port``."""
_METER_BLOCKS = frozenset({0x4C41_0000, _LEARN_PLAIN_IDS, _LEARN_BOND_IDS, _BFD_IDS})
BFD_METER_PPS = 200
"""BFD packets a second (and burst) a member may punt: a partner at the fastest 10 ms interval sends 100."""


def lacp_meter(port: int) -> int:
    """The meter limiting the LACP punts of member ``port``, when the switch has meters.

    Member ports are at most ``MAX_MEMBER_PORT`` (LACP carries 16 bits), so the ids fill the
    low half-word of ``OUR_IDS``, below OFPM_MAX.
    """
    return OUR_IDS | port


def learn_meter(logical: int) -> int | None:
    """The meter limiting the learning punts of a logical port: a bond's, or a plain port's up to
    0xFFFF; None for a plain port numbered higher (its punt is not metered)."""
    if is_bond(logical):
        return _LEARN_BOND_IDS | (bond_group(logical) & 0x7FFF)
    return _LEARN_PLAIN_IDS | logical if logical <= 0xFFFF else None


def bfd_meter(port: int) -> int:
    """The meter limiting the BFD punts of member ``port`` (at most 0xFFFF), when the switch has meters."""
    return _BFD_IDS | port


def is_our_group(group_id: int) -> bool:
    """Whether a group id is in ryu_lag's block (any other group belongs to another application)."""
    return group_id & _ID_BLOCK_MASK == OUR_IDS


def is_our_meter(meter_id: int) -> bool:
    """Whether a meter id is in one of ryu_lag's blocks: LACP (``OUR_IDS``), learning
    (0x4C42xxxx, 0x4C43xxxx) or BFD (0x4C44xxxx); any other meter belongs to another application."""
    return meter_id & _ID_BLOCK_MASK in _METER_BLOCKS


_OFPP_MAX = 0xFFFFFF00  # highest physical port number

_LACPDU = Match(eth_type=ETH_TYPE_SLOW, eth_dst=SLOW_PROTOCOLS_MAC)
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")

_PRIO_LACP_PUNT = 30000
_PRIO_LACP_DROP = 29000
_PRIO_BFD_PUNT = 25000
_PRIO_PORT = 20000
_PRIO_HAIRPIN = 20001
_PRIO_LEARNED = 20000
_PRIO_FLOOD = 10000
_PRIO_LEARN_PUNT = 1
_PRIO_MISS = 0


def bond_logical(group_id: int) -> int:
    """The logical id of the bond with this group id."""
    return BOND_BASE | group_id


def is_bond(logical: int) -> bool:
    """Whether a logical id names a bond (rather than a plain port)."""
    return bool(logical & BOND_BASE)


def bond_group(logical: int) -> int:
    """The group id of a bond's logical id."""
    if not is_bond(logical):
        raise ValueError(f"logical port {logical:#x} is not a bond")
    return logical & ~BOND_BASE


def flood_from(group_id: int) -> int:
    """The id of the ALL group flooding frames that came in on the bond with this group id."""
    return group_id | _FLOOD_FROM


def normalise_mac(mac: str) -> str:
    """``mac`` as lowercase colon form; ``-`` separators accepted. Raises ValueError."""
    normal = mac.replace("-", ":").lower()
    if _MAC.fullmatch(normal) is None:
        raise ValueError(f"not a MAC address: {mac!r}")
    return normal


def _is_physical(port: int) -> bool:
    return 0 < port <= _OFPP_MAX


def _is_unicast(mac: str) -> bool:
    return not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


def _learned_cookie(logical: int) -> int:
    return COOKIE | _LEARNED | logical


@dataclass(frozen=True)
class Bond:
    """A bond: its SELECT group, which members collect and distribute, and where its BFD packets go."""

    group_id: int
    members: frozenset[int]
    collecting: frozenset[int] = frozenset()
    distributing: frozenset[int] = frozenset()
    bfd_dst: str | None = None  # Ethernet destination of the BFD packets its members punt; None: no BFD

    @property
    def logical(self) -> int:
        """The bond's logical port id (its metadata value)."""
        return bond_logical(self.group_id)


_FlowKey = tuple[Table, int, Match]

_PIPELINE = 0
"""Owner of the flows that belong to no port or bond (never a physical port)."""


class LagSwitch:
    """LAG-aware learning switch for one datapath; each method returns messages to send in order."""

    def __init__(
        self,
        mac_age: int = 300,
        lacp_meter_pps: int = DEFAULT_LACP_METER_PPS,
        learn_meter_pps: int = DEFAULT_LEARN_METER_PPS,
        max_macs: int = DEFAULT_MAX_MACS,
    ) -> None:
        if not 1 <= mac_age <= 0xFFFF:
            raise ValueError(f"mac_age must be 1..65535 seconds, not {mac_age}")
        if lacp_meter_pps < MIN_LACP_METER_PPS:
            raise ValueError(f"lacp_meter_pps must be at least {MIN_LACP_METER_PPS}, not {lacp_meter_pps}")
        if learn_meter_pps < MIN_LEARN_METER_PPS:
            raise ValueError(f"learn_meter_pps must be at least {MIN_LEARN_METER_PPS}, not {learn_meter_pps}")
        if max_macs < 1:
            raise ValueError(f"max_macs must be at least 1, not {max_macs}")
        self.mac_age = mac_age
        self.lacp_meter_pps = lacp_meter_pps  # per member, also the burst
        self.learn_meter_pps = learn_meter_pps  # per logical port, also the burst
        self.max_macs = max_macs
        self.learn_dropped: collections.Counter[str] = collections.Counter()
        """Sources not learned, by reason (``LEARN_DROP_REASONS``): ``TABLE_FULL`` here, ``QUEUE_FULL`` by the shell."""
        self.packet_outs_dropped = 0
        """LACPDU packet-outs the shell dropped because the switch did not read them (counted with the switch)."""
        self._learning = True  # false from max_macs until the table is back to LEARN_RESUME_FRACTION of it
        self._metered = False
        self._meters: dict[int, MeterMod] = {}  # installed meters of ours, as their ADD
        self._present: set[int] = set()
        self._plain: set[int] = set()
        self._logical: dict[int, int] = {}  # every member, and every present plain port
        self._leaving: set[int] = set()  # ports removed from a bond, until released: LACP punt, else drop
        self._bonds: dict[int, Bond] = {}
        self._distributing: set[int] = set()  # group ids of bonds with a distributing member
        self._macs: dict[str, int] = {}
        self._macs_on: dict[int, set[str]] = {}  # logical port -> MACs learned there
        self._flows: dict[int, dict[_FlowKey, FlowMod]] = {}  # installed static flows by owner
        self._groups: dict[int, GroupMod] = {}  # installed groups, as their ADD

    # -- read-only views -------------------------------------------------------------------

    def macs(self) -> dict[str, int]:
        """Learned MACs: mac -> logical port id."""
        return dict(self._macs)

    def plain_ports(self) -> frozenset[int]:
        """Present ports that are not bond members."""
        return frozenset(self._plain)

    def bonds(self) -> dict[int, Bond]:
        """Bonds by group id."""
        return dict(self._bonds)

    def logical_port(self, port: int) -> int | None:
        """The logical port of a physical port: its bond's for a member, itself if plain."""
        return self._logical.get(port)

    def leaving_ports(self) -> frozenset[int]:
        """Ports removed from a bond and not released yet."""
        return frozenset(self._leaving)

    def mac_count(self) -> int:
        """How many MACs are learned now."""
        return len(self._macs)

    @property
    def learning(self) -> bool:
        """Whether unknown sources are punted to be learned (false while the table is full)."""
        return self._learning

    # -- switch and ports ------------------------------------------------------------------

    def resume(
        self,
        ports: Iterable[int],
        meters: bool,
        bonds: Iterable[Bond],
        observed: ObservedSwitch | None,
        leaving: Iterable[int] = (),
    ) -> list[Message]:
        """The switch (re)connected: take the desired state at once, return the fewest messages
        turning what the switch has into it.

        Desired: ``ports`` present, ``bonds`` with their members collecting and distributing
        as given, and the MACs whose learned ETH_SRC flow ``observed`` holds on a logical port
        that still exists (their flows are kept; a missing ETH_DST or hairpin flow is added);
        ``leaving`` ports (removed from a bond, not released yet) stay leaving. Only our entries are touched: flows by cookie, groups and meters by id block. Order:
        add missing and modify wrong meters, add missing groups, modify wrong groups, add
        missing or wrong flows (an ADD replaces), strict-delete stale flows, delete stale
        groups (chains first), delete stale meters. ``observed`` None (the switch could not be
        read): delete our flows by cookie and the groups and meters we want by id, then install
        everything. Raises ValueError for inconsistent bonds or leaving ports, changing nothing.
        """
        leaving = frozenset(leaving)
        by_group: dict[int, Bond] = {}
        logical: dict[int, int] = {}
        for bond in bonds:
            _check_bond(bond.group_id, bond.members)
            if bond.group_id in by_group:
                raise ValueError(f"bond {bond.group_id} given twice")
            if taken := sorted(bond.members & logical.keys()):
                raise ValueError(f"bond {bond.group_id}: ports already in a bond: {taken}")
            if stray := sorted((bond.collecting | bond.distributing) - bond.members):
                raise ValueError(f"bond {bond.group_id}: collecting or distributing ports that are not members: {stray}")
            by_group[bond.group_id] = bond
            logical.update(dict.fromkeys(bond.members, bond.logical))
        if bad := sorted(p for p in leaving if p in logical or not 1 <= p <= MAX_MEMBER_PORT):
            raise ValueError(f"leaving ports that are members or not member ports: {bad}")
        self._present = {p for p in ports if _is_physical(p)}
        self._plain = self._present - logical.keys() - leaving
        self._logical = {p: p for p in self._plain} | logical
        self._leaving = set(leaving)
        self._bonds = by_group
        self._distributing = {g for g, bond in by_group.items() if bond.distributing}
        self._metered = meters
        self._macs = {}
        self._macs_on = {}
        learned = self._recover_macs(observed.flows) if observed is not None else []
        self._learning = len(self._macs) < self.max_macs
        chain = tuple(sorted(self._distributing))
        self._groups = {}
        for group_id in [*by_group, *map(flood_from, by_group), FLOOD_PLAIN, FLOOD_ALL]:
            group = self._wanted_group(group_id, chain)
            assert group is not None  # every bond and the two floods have one
            self._groups[group_id] = group
        self._flows = {}
        for owner in [_PIPELINE, *self._logical, *self._leaving, *(bond.logical for bond in by_group.values())]:
            if wanted := self._wanted_flows(owner):
                self._flows[owner] = {(f.table, f.priority, f.match): f for f in wanted}
        self._meters = {}
        for owner in [*self._logical, *self._leaving, *(bond.logical for bond in by_group.values())]:
            self._meters.update(self._wanted_meters(owner))
        if observed is None:
            return self._cold_start()
        return self._reconcile(observed, learned)

    def port_added(self, port: int) -> list[Message]:
        """A port appeared. It carries traffic as a plain port unless it is a bond member."""
        if not _is_physical(port) or port in self._present:
            return []
        self._present.add(port)
        if port in self._logical or port in self._leaving:
            return []  # a member (or leaving port) stays one; its flows do not depend on presence
        self._plain.add(port)
        self._logical[port] = port
        return self._sync([port], [FLOOD_PLAIN])

    def port_removed(self, port: int) -> list[Message]:
        """A port went away; MACs learned on it (as a plain port) are forgotten. A member or leaving port keeps its flows."""
        self._present.discard(port)
        if port not in self._plain:
            return []  # absent, or a member: a member keeps its flows
        msgs = self._flush_logical(port, gone=True)
        self._plain.discard(port)
        del self._logical[port]
        return msgs + self._sync([port], [FLOOD_PLAIN]) + self._resume_learning()

    # -- bonds -----------------------------------------------------------------------------

    def add_bond(self, group_id: int, members: Iterable[int]) -> list[Message]:
        """Create a bond; its members stop being plain ports. Nothing distributes yet."""
        members = frozenset(members)
        _check_bond(group_id, members)
        if group_id in self._bonds:
            raise ValueError(f"bond {group_id} already exists")
        if taken := sorted(p for p in members if is_bond(self._logical.get(p, 0))):
            raise ValueError(f"bond {group_id}: ports already in a bond: {taken}")
        bond = Bond(group_id, members)
        self._bonds[group_id] = bond
        groups = [group_id, flood_from(group_id)]
        msgs: list[Message] = []
        if was_plain := sorted(members & self._plain):
            for port in was_plain:
                msgs += self._flush_logical(port, gone=True)
            self._plain.difference_update(was_plain)
            groups.append(FLOOD_PLAIN)
        self._leaving -= members
        self._logical.update(dict.fromkeys(members, bond.logical))
        return msgs + self._sync([*sorted(members), bond.logical], groups)

    def remove_bond(self, group_id: int) -> list[Message]:
        """Delete a bond; its members become plain ports and MACs learned on it are forgotten."""
        bond = self._bond(group_id)
        msgs = self._flush_logical(bond.logical, gone=True)
        del self._bonds[group_id]
        groups = [group_id, flood_from(group_id)]
        if group_id in self._distributing:
            self._distributing.discard(group_id)
            groups += self._chains()
        for port in bond.members:
            del self._logical[port]
        if back := bond.members & self._present:
            self._plain |= back
            self._logical.update((p, p) for p in back)
            groups.append(FLOOD_PLAIN)
        return msgs + self._sync([*sorted(bond.members), bond.logical], groups)

    def set_members(self, group_id: int, members: Iterable[int]) -> list[Message]:
        """Change a live bond's members in place.

        Added ports become members that neither collect nor distribute (LACP punt, else drop);
        MACs learned on them as plain ports are forgotten. Removed ports leave the SELECT group
        at once and become *leaving* (see ``release``): their LACPDUs still reach the
        controller, every other frame is dropped. Members that stay keep their flows; the flood
        groups chaining bonds change only if the bond loses its last distributing member.
        """
        bond = self._bond(group_id)
        members = frozenset(members)
        _check_bond(group_id, members)
        added, removed = members - bond.members, bond.members - members
        if taken := sorted(p for p in added if is_bond(self._logical.get(p, 0))):
            raise ValueError(f"bond {group_id}: ports already in a bond: {taken}")
        if not added and not removed:
            return []
        new = dataclasses.replace(
            bond, members=members, collecting=bond.collecting & members, distributing=bond.distributing & members
        )
        self._bonds[group_id] = new
        groups = [group_id] if new.distributing != bond.distributing else []
        if bond.distributing and not new.distributing:
            self._distributing.discard(group_id)
            groups += self._chains()
        msgs: list[Message] = []
        if was_plain := sorted(added & self._plain):
            for port in was_plain:
                msgs += self._flush_logical(port, gone=True)
            self._plain.difference_update(was_plain)
            groups.append(FLOOD_PLAIN)
        self._leaving = (self._leaving - added) | removed
        for port in removed:
            del self._logical[port]
        self._logical.update(dict.fromkeys(added, new.logical))
        return msgs + self._sync(sorted(added | removed), groups)

    def set_bfd(self, group_id: int, dst_mac: str | None) -> list[Message]:
        """Punt the BFD packets (IPv4 to ``dst_mac``) of a bond's members to the controller; None: stop."""
        bond = self._bond(group_id)
        dst = None if dst_mac is None else normalise_mac(dst_mac)
        if dst == bond.bfd_dst:
            return []
        self._bonds[group_id] = dataclasses.replace(bond, bfd_dst=dst)
        return self._sync(sorted(bond.members), [])

    def release(self, port: int) -> list[Message]:
        """A leaving port becomes a plain port (if present), as if it had never been a member.
        Any other port: nothing to do."""
        if port not in self._leaving:
            return []
        self._leaving.discard(port)
        if port not in self._present:
            return self._sync([port], [])
        self._plain.add(port)
        self._logical[port] = port
        return self._sync([port], [FLOOD_PLAIN])

    def set_member(self, group_id: int, port: int, collecting: bool, distributing: bool) -> list[Message]:
        """Set whether a member collects and distributes; edits only its ingress rule and the group
        (and the flood groups when the bond gains its first or loses its last distributing member)."""
        bond = self._bond(group_id)
        if port not in bond.members:
            raise ValueError(f"port {port} is not a member of bond {group_id}")
        new = dataclasses.replace(
            bond,
            collecting=bond.collecting | {port} if collecting else bond.collecting - {port},
            distributing=bond.distributing | {port} if distributing else bond.distributing - {port},
        )
        self._bonds[group_id] = new
        groups = [group_id] if new.distributing != bond.distributing else []
        if bool(new.distributing) != bool(bond.distributing):
            if new.distributing:
                self._distributing.add(group_id)
            else:
                self._distributing.discard(group_id)
            groups += self._chains()
        return self._sync([port], groups)

    # -- learning --------------------------------------------------------------------------

    def packet_in(self, in_port: int, eth_src: str, eth_dst: str) -> list[Message]:
        """Learn from a non-LACP packet-in.

        ``eth_dst`` plays no part: the switch already forwarded the frame (an ETH_SRC miss
        goes on to ETH_DST), so nothing is sent for the destination.
        """
        logical = self._logical.get(in_port)
        if logical is None:
            return []
        if is_bond(logical) and in_port not in self._bonds[bond_group(logical)].collecting:
            return []
        mac = normalise_mac(eth_src)
        if not _is_unicast(mac):
            return []
        known = self._macs.get(mac)
        if known == logical:
            return [self._src_flow(logical, mac)]
        if known is None and len(self._macs) >= self.max_macs:
            self.learn_dropped[TABLE_FULL] += 1
            return self._set_learning(False) if self._learning else []
        msgs = self._forget(mac) if known is not None else []
        self._macs[mac] = logical
        self._macs_on.setdefault(logical, set()).add(mac)
        return msgs + self._learn_flows(logical, mac)

    def flow_removed(self, metadata: int, eth_src: str) -> list[Message]:
        """A learned ETH_SRC flow went away: forget the MAC if it is still learned there."""
        mac = normalise_mac(eth_src)
        if self._macs.get(mac) != metadata:
            return []  # already moved or forgotten (e.g. the removal of a flow we deleted)
        self._unlearn(mac)
        return [self._delete_learned(Table.ETH_DST, Match(eth_dst=mac)), *self._resume_learning()]

    def flush(self, logical: int | None = None) -> list[Message]:
        """Forget every learned MAC, or those on one logical port, deleting exactly their flows."""
        if logical is not None:
            return self._flush_logical(logical) + self._resume_learning()
        self._macs.clear()
        self._macs_on.clear()
        return [
            FlowMod(table, _PRIO_LEARNED, Match(), FlowCommand.DELETE,
                    cookie=COOKIE | _LEARNED, cookie_mask=COOKIE_MASK | _LEARNED)
            for table in (Table.ETH_SRC, Table.ETH_DST)
        ] + self._resume_learning()

    # -- internals -------------------------------------------------------------------------

    def _bond(self, group_id: int) -> Bond:
        try:
            return self._bonds[group_id]
        except KeyError:
            raise ValueError(f"no bond {group_id}") from None

    def _chains(self) -> list[int]:
        """The groups that chain the distributing bonds: FLOOD_ALL and every bond's FLOOD_FROM."""
        return [FLOOD_ALL, *(flood_from(g) for g in self._bonds)]

    def _wanted_meters(self, owner: int) -> dict[int, MeterMod]:
        """The meters an owner's punts go through now, on a switch with meters: a member's or leaving
        port's LACP meter, a plain port's or bond's learn meter."""
        if not self._metered:
            return {}
        wanted: list[MeterMod] = []
        if is_bond(owner):
            if bond_group(owner) in self._bonds:
                wanted.append(MeterMod(learn_meter(owner), self.learn_meter_pps, self.learn_meter_pps))
        elif owner in self._leaving or is_bond(self._logical.get(owner, 0)):
            wanted.append(MeterMod(lacp_meter(owner), self.lacp_meter_pps, self.lacp_meter_pps))
            if self._bfd_dst(owner) is not None:
                wanted.append(MeterMod(bfd_meter(owner), BFD_METER_PPS, BFD_METER_PPS))
        elif owner in self._plain and (meter_id := learn_meter(owner)) is not None:
            wanted.append(MeterMod(meter_id, self.learn_meter_pps, self.learn_meter_pps))
        return {m.meter_id: m for m in wanted}

    @staticmethod
    def _possible_meters(owner: int) -> set[int]:
        """Every meter id an owner's punts may go through (whichever it is now)."""
        if is_bond(owner):
            return {learn_meter(owner)}  # type: ignore[arg-type]  # a bond always has one
        ids = {lacp_meter(owner), bfd_meter(owner)} if owner <= MAX_MEMBER_PORT else set()
        return ids | ({m} if (m := learn_meter(owner)) is not None else set())

    def _set_learning(self, on: bool) -> list[Message]:
        """Start or stop punting unknown sources: every logical port's learn punt comes or goes."""
        self._learning = on
        return self._sync([*sorted(self._plain), *(b.logical for b in self._bonds.values())], [])

    def _resume_learning(self) -> list[Message]:
        """Learning paused at max_macs starts again once the table is back to LEARN_RESUME_FRACTION of it."""
        if self._learning or len(self._macs) > self.max_macs * LEARN_RESUME_FRACTION:
            return []
        return self._set_learning(True)

    def _recover_macs(self, flows: Iterable[FlowMod]) -> list[FlowMod]:
        """Learn the MACs of the well-formed learned ETH_SRC flows in ``flows`` whose logical port
        exists (one per MAC); return every learned flow they should have."""
        for flow in sorted((f for f in flows if f.table == Table.ETH_SRC and f.priority == _PRIO_LEARNED),
                           key=lambda f: (f.cookie, f.match.eth_src or "")):
            logical, mac = flow.match.metadata, flow.match.eth_src
            if logical is None or mac is None or flow.match != Match(metadata=logical, eth_src=mac):
                continue
            if flow.cookie != _learned_cookie(logical) or mac in self._macs or not _is_unicast(mac):
                continue
            if len(self._macs) >= self.max_macs:
                break
            if logical in self._plain or (is_bond(logical) and bond_group(logical) in self._bonds):
                self._macs[mac] = logical
                self._macs_on.setdefault(logical, set()).add(mac)
        return [flow for mac, logical in self._macs.items() for flow in self._learn_flows(logical, mac)]

    def _reconcile(self, observed: ObservedSwitch, learned: list[FlowMod]) -> list[Message]:
        """The messages turning ``observed`` into the model (static flows, learned flows, groups, meters)."""
        have_meters = {m.meter_id: m for m in observed.meters if is_our_meter(m.meter_id)}
        want_meters = {meter_id: self._meters[meter_id] for meter_id in sorted(self._meters)}
        meter_sets: list[Message] = [
            m if m.meter_id not in have_meters else dataclasses.replace(m, command=MeterCommand.MODIFY)
            for meter_id, m in want_meters.items() if have_meters.get(meter_id) != m
        ]
        meter_deletes: list[Message] = [
            MeterMod(meter_id, command=MeterCommand.DELETE) for meter_id in sorted(have_meters.keys() - want_meters)
        ]
        have_groups = {g.group_id: g for g in observed.groups if is_our_group(g.group_id)}
        group_adds: list[Message] = []
        group_changes: list[Message] = []
        for group_id in sorted(self._groups, key=_group_rank):
            want, have = self._groups[group_id], have_groups.get(group_id)
            if have is None:
                group_adds.append(want)
            elif have != want:
                group_changes.append(dataclasses.replace(want, command=GroupCommand.MODIFY))
        group_deletes: list[Message] = [
            GroupMod(GroupCommand.DELETE, group_id, group_type=have_groups[group_id].group_type)
            for group_id in sorted(have_groups.keys() - self._groups.keys(), key=_group_rank, reverse=True)
        ]
        want_flows = {key: f for flows in self._flows.values() for key, f in flows.items()}
        want_flows.update(((f.table, f.priority, f.match), f) for f in learned)
        have_flows = {(f.table, f.priority, f.match): f for f in observed.flows if f.cookie & COOKIE_MASK == COOKIE}
        flow_adds: list[Message] = [f for key, f in want_flows.items() if have_flows.get(key) != f]
        flow_deletes: list[Message] = [
            FlowMod(f.table, f.priority, f.match, FlowCommand.DELETE_STRICT, cookie=f.cookie, cookie_mask=_ALL_BITS)
            for key, f in have_flows.items() if key not in want_flows
        ]
        return [*meter_sets, *group_adds, *group_changes, *flow_adds, *flow_deletes, *group_deletes, *meter_deletes]

    def _cold_start(self) -> list[Message]:
        """Delete our flows (by cookie) and every group and meter id we want, then install the model."""
        msgs: list[Message] = [
            FlowMod(table, _PRIO_MISS, Match(), FlowCommand.DELETE, cookie=COOKIE, cookie_mask=COOKIE_MASK)
            for table in Table
        ]
        msgs += [
            GroupMod(GroupCommand.DELETE, group_id, group_type=self._groups[group_id].group_type)
            for group_id in sorted(self._groups, key=_group_rank, reverse=True)
        ]
        msgs += [MeterMod(meter_id, command=MeterCommand.DELETE) for meter_id in sorted(self._meters)]
        return msgs + self._reconcile(ObservedSwitch(), [])

    def _unlearn(self, mac: str) -> None:
        logical = self._macs.pop(mac)
        on = self._macs_on[logical]
        on.discard(mac)
        if not on:
            del self._macs_on[logical]

    def _flush_logical(self, logical: int, gone: bool = False) -> list[Message]:
        """Forget the MACs learned on a logical port, deleting their flows. ``gone``: the logical
        port is going away, so one delete of its ETH_SRC flows also takes its learn punt (which
        the following ``_sync`` then does not delete again)."""
        for mac in self._macs_on.pop(logical, ()):
            del self._macs[mac]
        dst = FlowMod(Table.ETH_DST, _PRIO_LEARNED, Match(), FlowCommand.DELETE,
                      cookie=_learned_cookie(logical), cookie_mask=_ALL_BITS)
        if not gone:
            return [FlowMod(Table.ETH_SRC, _PRIO_LEARNED, Match(), FlowCommand.DELETE,
                            cookie=_learned_cookie(logical), cookie_mask=_ALL_BITS), dst]
        self._flows.get(logical, {}).pop((Table.ETH_SRC, _PRIO_LEARN_PUNT, Match(metadata=logical)), None)
        return [FlowMod(Table.ETH_SRC, _PRIO_LEARNED, Match(metadata=logical), FlowCommand.DELETE,
                        cookie=COOKIE, cookie_mask=COOKIE_MASK), dst]

    def _forget(self, mac: str) -> list[Message]:
        self._unlearn(mac)
        return [
            self._delete_learned(Table.ETH_SRC, Match(eth_src=mac)),
            self._delete_learned(Table.ETH_DST, Match(eth_dst=mac)),
        ]

    @staticmethod
    def _delete_learned(table: Table, match: Match) -> FlowMod:
        return FlowMod(table, _PRIO_LEARNED, match, FlowCommand.DELETE,
                       cookie=COOKIE | _LEARNED, cookie_mask=COOKIE_MASK | _LEARNED)

    def _src_flow(self, logical: int, mac: str) -> FlowMod:
        return FlowMod(Table.ETH_SRC, _PRIO_LEARNED, Match(metadata=logical, eth_src=mac),
                       goto=Table.ETH_DST, idle_timeout=self.mac_age, notify_removal=True,
                       cookie=_learned_cookie(logical))

    def _learn_flows(self, logical: int, mac: str) -> list[Message]:
        # Destination first, so that once the source stops punting its replies are unicast.
        # The destination flow has no timeout of its own: it lives as long as the source flow
        # (flow_removed deletes it), so a host that only sends is never flooded to.
        cookie = _learned_cookie(logical)
        msgs: list[Message] = []
        if is_bond(logical):
            msgs.append(FlowMod(Table.ETH_DST, _PRIO_HAIRPIN, Match(metadata=logical, eth_dst=mac), cookie=cookie))
            action: Output | Group = Group(bond_group(logical))
        else:
            action = Output(logical)
        msgs.append(FlowMod(Table.ETH_DST, _PRIO_LEARNED, Match(eth_dst=mac), actions=(action,), cookie=cookie))
        msgs.append(self._src_flow(logical, mac))
        return msgs

    def _wanted_flows(self, owner: int) -> list[FlowMod]:
        """The static flows an owner (a port, a bond's logical id or ``_PIPELINE``) should have now."""
        if owner == _PIPELINE:
            return [
                FlowMod(Table.INGRESS, _PRIO_MISS, Match(), cookie=COOKIE),
                FlowMod(Table.INGRESS, _PRIO_LACP_DROP, _LACPDU, cookie=COOKIE),
                FlowMod(Table.ETH_SRC, _PRIO_MISS, Match(), goto=Table.ETH_DST, cookie=COOKIE),
                FlowMod(Table.ETH_DST, _PRIO_MISS, Match(), cookie=COOKIE),
            ]
        if is_bond(owner):
            if bond_group(owner) not in self._bonds:
                return []
            return [_flood_flow(owner, flood_from(bond_group(owner))), *self._learn_punt(owner)]
        logical = self._logical.get(owner)
        drop = FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=owner), cookie=COOKIE)
        if owner in self._leaving:
            return [self._lacp_punt(owner), drop]
        if logical is None:
            return []
        if logical == owner:
            return [
                FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=owner), write_metadata=owner, goto=Table.ETH_SRC,
                        cookie=COOKIE),
                _flood_flow(owner, FLOOD_ALL),
                *self._learn_punt(owner),
            ]
        punts = [self._lacp_punt(owner)]
        if (bfd_dst := self._bfd_dst(owner)) is not None:
            punts.append(FlowMod(Table.INGRESS, _PRIO_BFD_PUNT, Match(in_port=owner, eth_type=ETH_TYPE_IPV4, eth_dst=bfd_dst),
                                 actions=(Output(OFPP_CONTROLLER),), meter=bfd_meter(owner) if self._metered else None,
                                 cookie=COOKIE))
        if owner in self._bonds[bond_group(logical)].collecting:
            return [*punts, FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=owner), write_metadata=logical,
                                    goto=Table.ETH_SRC, cookie=COOKIE)]
        return [*punts, drop]

    def _bfd_dst(self, port: int) -> str | None:
        """The BFD destination MAC of the bond that has member ``port``; None when it runs no BFD."""
        logical = self._logical.get(port)
        return self._bonds[bond_group(logical)].bfd_dst if logical is not None and is_bond(logical) else None

    def _learn_punt(self, logical: int) -> list[FlowMod]:
        """A logical port's ETH_SRC miss while learning: punt to learn (through its learn meter when
        the switch has meters) and go on to ETH_DST. None while learning is paused."""
        if not self._learning:
            return []
        meter = learn_meter(logical) if self._metered else None
        return [FlowMod(Table.ETH_SRC, _PRIO_LEARN_PUNT, Match(metadata=logical), actions=(Output(OFPP_CONTROLLER),),
                        goto=Table.ETH_DST, meter=meter, cookie=COOKIE)]

    def _lacp_punt(self, port: int) -> FlowMod:
        """LACPDUs from a member or leaving port go to the controller, through its meter if the switch has meters."""
        return FlowMod(Table.INGRESS, _PRIO_LACP_PUNT, dataclasses.replace(_LACPDU, in_port=port),
                       actions=(Output(OFPP_CONTROLLER),), meter=lacp_meter(port) if self._metered else None,
                       cookie=COOKIE)

    def _wanted_group(self, group_id: int, chain: tuple[int, ...]) -> GroupMod | None:
        """The group (as its ADD) that should exist now under this id; ``chain`` = distributing bonds."""
        if group_id == FLOOD_PLAIN:
            return GroupMod(GroupCommand.ADD, FLOOD_PLAIN, tuple(sorted(self._plain)), GroupType.ALL)
        if group_id == FLOOD_ALL:
            return GroupMod(GroupCommand.ADD, FLOOD_ALL, (), GroupType.ALL, (FLOOD_PLAIN, *chain))
        if group_id & _FLOOD_FROM:
            source = group_id & ~_FLOOD_FROM
            if source not in self._bonds:
                return None
            others = tuple(g for g in chain if g != source)
            return GroupMod(GroupCommand.ADD, group_id, (), GroupType.ALL, (FLOOD_PLAIN, *others))
        bond = self._bonds.get(group_id)
        return None if bond is None else GroupMod(GroupCommand.ADD, group_id, tuple(sorted(bond.distributing)))

    def _sync(self, owners: Iterable[int], group_ids: Iterable[int]) -> list[Message]:
        """Bring the named owners' static flows and the named groups up to date, sending only what differs.

        Owners that are physical ports also get or lose their LACP meter with their membership.
        Order keeps every reference valid: new groups (bonds' before the flood groups that chain
        them), changed groups (chains before what they chain), new meters, flows, then deleted
        meters and groups (chains before what they chain).
        """
        chain = tuple(sorted(self._distributing))
        added: list[GroupMod] = []
        changed: list[GroupMod] = []
        deleted: list[GroupMod] = []
        for group_id in sorted(set(group_ids), key=_group_rank):
            old, new = self._groups.get(group_id), self._wanted_group(group_id, chain)
            if new == old:
                continue
            if new is not None:
                self._groups[group_id] = new
                if old is None:
                    added.append(new)
                else:
                    changed.append(dataclasses.replace(new, command=GroupCommand.MODIFY))
            elif old is not None:
                del self._groups[group_id]
                deleted.append(GroupMod(GroupCommand.DELETE, group_id, group_type=old.group_type))
        flow_deletes: list[Message] = []
        flow_adds: list[Message] = []
        meter_adds: list[Message] = []
        meter_deletes: list[Message] = []
        for owner in owners:
            if owner != _PIPELINE:
                wanted_meters = self._wanted_meters(owner)
                for meter_id, meter in wanted_meters.items():
                    if meter_id not in self._meters:
                        self._meters[meter_id] = meter
                        meter_adds.append(meter)
                for meter_id in sorted(self._possible_meters(owner) - wanted_meters.keys()):
                    if self._meters.pop(meter_id, None) is not None:
                        meter_deletes.append(MeterMod(meter_id, command=MeterCommand.DELETE))
            old_flows = self._flows.pop(owner, {})
            new_flows = {(f.table, f.priority, f.match): f for f in self._wanted_flows(owner)}
            if new_flows:
                self._flows[owner] = new_flows
            flow_deletes += [
                FlowMod(f.table, f.priority, f.match, FlowCommand.DELETE_STRICT, cookie=COOKIE, cookie_mask=_ALL_BITS)
                for key, f in old_flows.items() if key not in new_flows
            ]
            flow_adds += [f for key, f in new_flows.items() if old_flows.get(key) != f]
        return [*added, *reversed(changed), *meter_adds, *flow_deletes, *flow_adds, *meter_deletes, *reversed(deleted)]


def _flood_flow(logical: int, group_id: int) -> FlowMod:
    """ETH_DST miss for frames from ``logical``: flood through ``group_id``."""
    return FlowMod(Table.ETH_DST, _PRIO_FLOOD, Match(metadata=logical), actions=(Group(group_id),), cookie=COOKIE)


def _check_bond(group_id: int, members: frozenset[int]) -> None:
    """Raise ValueError unless the group id is a bond's and the members are member ports."""
    if not BOND_GROUP_MIN <= group_id <= BOND_GROUP_MAX:
        raise ValueError(f"group id {group_id:#x} out of range {BOND_GROUP_MIN:#x}..{BOND_GROUP_MAX:#x}")
    if not members:
        raise ValueError(f"bond {group_id:#x} has no members")
    if bad := sorted(p for p in members if not 1 <= p <= MAX_MEMBER_PORT):
        raise ValueError(f"bond {group_id:#x}: not member ports (1..{MAX_MEMBER_PORT}): {bad}")


def _group_rank(group_id: int) -> tuple[int, int]:
    """Bonds' SELECT groups, then FLOOD_PLAIN, then the groups chaining them (FLOOD_ALL, FLOOD_FROM)."""
    if BOND_GROUP_MIN <= group_id <= BOND_GROUP_MAX:
        return 0, group_id
    return (1 if group_id == FLOOD_PLAIN else 2), group_id
