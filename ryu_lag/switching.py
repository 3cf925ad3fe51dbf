"""The LAG-aware learning switch, as pure decisions returning OpenFlow messages.

One ``LagSwitch`` per datapath. A bond is ONE logical port; a plain port is its own. The
pipeline (every flow carries a cookie selected by ``COOKIE_MASK``):

- ``INGRESS``: a LACPDU from a bond member goes to the controller (metered when the switch
  has meters), from any other port it is dropped. Data from a collecting member or a plain
  port gets ``metadata = logical port`` and goes on; anything else is dropped.
- ``ETH_SRC``: a known (logical port, source MAC) goes on; a miss also punts to learn.
- ``ETH_DST``: a known destination goes to its port or its bond's SELECT group (never back
  into the bond it came from); otherwise one flood flow per input logical port.

Rules this module keeps:

- A flood leaves every other logical port once: a bond through its SELECT group, which
  picks one live member, and only while the bond has a distributing member.
- Member state changes edit only the member's ingress rule and the group, never learned
  MACs; floods change only when a bond gains its first or loses its last distributing member.
- Static flows are kept as a desired set and synced by difference: a change sends only the
  flows that differ. Learned flows carry a per-logical-port cookie so that forgetting a
  port's MACs deletes exactly their flows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from ryu_lag.openflow import (
    ETH_TYPE_SLOW,
    OFPG_ALL,
    OFPP_CONTROLLER,
    SLOW_PROTOCOLS_MAC,
    FlowCommand,
    FlowMod,
    Group,
    GroupCommand,
    GroupMod,
    Match,
    Message,
    MeterCommand,
    MeterMod,
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
METER_ID = 1
"""The meter limiting LACP punts, when the switch has meters."""

_OFPP_MAX = 0xFFFFFF00  # highest physical port number
_OFPG_MAX = 0xFFFFFF00  # highest group id

_LACPDU = Match(eth_type=ETH_TYPE_SLOW, eth_dst=SLOW_PROTOCOLS_MAC)

_PRIO_LACP_PUNT = 30000
_PRIO_LACP_DROP = 29000
_PRIO_PORT = 20000
_PRIO_HAIRPIN = 20001
_PRIO_LEARNED = 20000
_PRIO_FLOOD = 10000
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


def normalise_mac(mac: str) -> str:
    """``mac`` as lowercase colon form; ``-`` separators accepted. Raises ValueError."""
    octets = mac.replace("-", ":").lower().split(":")
    if len(octets) != 6 or not all(len(o) == 2 and all(c in "0123456789abcdef" for c in o) for o in octets):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(octets)


def _is_physical(port: int) -> bool:
    return 0 < port <= _OFPP_MAX


def _is_unicast(mac: str) -> bool:
    return not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


def _learned_cookie(logical: int) -> int:
    return COOKIE | _LEARNED | logical


@dataclass(frozen=True)
class Bond:
    """A bond: its SELECT group and which members collect and distribute."""

    group_id: int
    members: frozenset[int]
    collecting: frozenset[int] = frozenset()
    distributing: frozenset[int] = frozenset()

    @property
    def logical(self) -> int:
        """The bond's logical port id (its metadata value)."""
        return bond_logical(self.group_id)


_FlowKey = tuple[Table, int, Match]


class LagSwitch:
    """LAG-aware learning switch for one datapath; each method returns messages to send in order."""

    def __init__(self, mac_age: int = 300, lacp_meter_pps: int = 1000) -> None:
        if not 1 <= mac_age <= 0xFFFF:
            raise ValueError(f"mac_age must be 1..65535 seconds, not {mac_age}")
        if lacp_meter_pps < 1:
            raise ValueError(f"lacp_meter_pps must be at least 1, not {lacp_meter_pps}")
        self.mac_age = mac_age
        self.lacp_meter_pps = lacp_meter_pps
        self._meter: int | None = None
        self._present: set[int] = set()
        self._bonds: dict[int, Bond] = {}
        self._macs: dict[str, int] = {}
        self._installed: dict[_FlowKey, FlowMod] = {}

    # -- read-only views -------------------------------------------------------------------

    def macs(self) -> dict[str, int]:
        """Learned MACs: mac -> logical port id."""
        return dict(self._macs)

    def plain_ports(self) -> frozenset[int]:
        """Present ports that are not bond members."""
        return frozenset(self._present - self._members())

    def bonds(self) -> dict[int, Bond]:
        """Bonds by group id."""
        return dict(self._bonds)

    def logical_port(self, port: int) -> int | None:
        """The logical port of a physical port: its bond's for a member, itself if plain."""
        for bond in self._bonds.values():
            if port in bond.members:
                return bond.logical
        return port if port in self.plain_ports() else None

    # -- switch and ports ------------------------------------------------------------------

    def startup(self, ports: Iterable[int], meters: bool) -> list[Message]:
        """The switch connected: wipe our flows and all groups, forget all state, install the pipeline."""
        self._present = {p for p in ports if _is_physical(p)}
        self._bonds = {}
        self._macs = {}
        self._installed = {}
        self._meter = METER_ID if meters else None
        msgs: list[Message] = [
            FlowMod(table, _PRIO_MISS, Match(), FlowCommand.DELETE, cookie=COOKIE, cookie_mask=COOKIE_MASK)
            for table in Table
        ]
        msgs.append(GroupMod(GroupCommand.DELETE, OFPG_ALL))
        if meters:
            burst = max(1, self.lacp_meter_pps // 10)
            msgs.append(MeterMod(METER_ID, command=MeterCommand.DELETE))  # a reconnect finds the old one
            msgs.append(MeterMod(METER_ID, self.lacp_meter_pps, burst))
        return msgs + self._sync()

    def port_added(self, port: int) -> list[Message]:
        """A port appeared. It carries traffic as a plain port unless it is a bond member."""
        if not _is_physical(port):
            return []
        self._present.add(port)
        return self._sync()

    def port_removed(self, port: int) -> list[Message]:
        """A port went away; MACs learned on it (as a plain port) are forgotten."""
        msgs = self._flush_logical(port) if port in self.plain_ports() else []
        self._present.discard(port)
        return msgs + self._sync()

    # -- bonds -----------------------------------------------------------------------------

    def add_bond(self, group_id: int, members: Iterable[int]) -> list[Message]:
        """Create a bond; its members stop being plain ports. Nothing distributes yet."""
        members = frozenset(members)
        if not 0 <= group_id <= _OFPG_MAX:
            raise ValueError(f"group id {group_id} out of range")
        if group_id in self._bonds:
            raise ValueError(f"bond {group_id} already exists")
        if not members:
            raise ValueError(f"bond {group_id} has no members")
        if bad := sorted(p for p in members if not _is_physical(p)):
            raise ValueError(f"bond {group_id}: not physical ports: {bad}")
        if taken := sorted(members & self._members()):
            raise ValueError(f"bond {group_id}: ports already in a bond: {taken}")
        msgs: list[Message] = []
        for port in sorted(members & self.plain_ports()):
            msgs += self._flush_logical(port)
        self._bonds[group_id] = Bond(group_id, members)
        msgs.append(GroupMod(GroupCommand.ADD, group_id))
        return msgs + self._sync()

    def remove_bond(self, group_id: int) -> list[Message]:
        """Delete a bond; its members become plain ports and MACs learned on it are forgotten."""
        bond = self._bond(group_id)
        msgs = self._flush_logical(bond.logical)
        del self._bonds[group_id]
        msgs += self._sync()
        msgs.append(GroupMod(GroupCommand.DELETE, group_id))
        return msgs

    def set_member(self, group_id: int, port: int, collecting: bool, distributing: bool) -> list[Message]:
        """Set whether a member collects and distributes; edits only its ingress rule and the group."""
        bond = self._bond(group_id)
        if port not in bond.members:
            raise ValueError(f"port {port} is not a member of bond {group_id}")
        new = dataclasses.replace(
            bond,
            collecting=bond.collecting | {port} if collecting else bond.collecting - {port},
            distributing=bond.distributing | {port} if distributing else bond.distributing - {port},
        )
        self._bonds[group_id] = new
        msgs: list[Message] = []
        if new.distributing != bond.distributing:
            msgs.append(GroupMod(GroupCommand.MODIFY, group_id, tuple(sorted(new.distributing))))
        return msgs + self._sync()

    # -- learning --------------------------------------------------------------------------

    def packet_in(self, in_port: int, eth_src: str, eth_dst: str) -> list[Message]:
        """Learn from a non-LACP packet-in.

        ``eth_dst`` plays no part: the switch already forwarded the frame (an ETH_SRC miss
        goes on to ETH_DST), so nothing is sent for the destination.
        """
        logical = self.logical_port(in_port)
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
        msgs = self._forget(mac) if known is not None else []
        self._macs[mac] = logical
        return msgs + self._learn_flows(logical, mac)

    def flow_removed(self, metadata: int, eth_src: str) -> list[Message]:
        """A learned ETH_SRC flow went away: forget the MAC if it is still learned there."""
        mac = normalise_mac(eth_src)
        if self._macs.get(mac) != metadata:
            return []  # already moved or forgotten (e.g. the removal of a flow we deleted)
        del self._macs[mac]
        return [self._delete_learned(Table.ETH_DST, Match(eth_dst=mac))]

    def flush(self, logical: int | None = None) -> list[Message]:
        """Forget every learned MAC, or those on one logical port, deleting exactly their flows."""
        if logical is not None:
            return self._flush_logical(logical)
        self._macs.clear()
        return [
            FlowMod(table, _PRIO_LEARNED, Match(), FlowCommand.DELETE,
                    cookie=COOKIE | _LEARNED, cookie_mask=COOKIE_MASK | _LEARNED)
            for table in (Table.ETH_SRC, Table.ETH_DST)
        ]

    # -- internals -------------------------------------------------------------------------

    def _bond(self, group_id: int) -> Bond:
        try:
            return self._bonds[group_id]
        except KeyError:
            raise ValueError(f"no bond {group_id}") from None

    def _members(self) -> set[int]:
        return {p for bond in self._bonds.values() for p in bond.members}

    def _flush_logical(self, logical: int) -> list[Message]:
        self._macs = {mac: lp for mac, lp in self._macs.items() if lp != logical}
        return [
            FlowMod(table, _PRIO_LEARNED, Match(), FlowCommand.DELETE,
                    cookie=_learned_cookie(logical), cookie_mask=_ALL_BITS)
            for table in (Table.ETH_SRC, Table.ETH_DST)
        ]

    def _forget(self, mac: str) -> list[Message]:
        del self._macs[mac]
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

    def _static_flows(self) -> list[FlowMod]:
        flows = [
            FlowMod(Table.INGRESS, _PRIO_MISS, Match()),
            FlowMod(Table.INGRESS, _PRIO_LACP_DROP, _LACPDU),
            FlowMod(Table.ETH_SRC, _PRIO_MISS, Match(), actions=(Output(OFPP_CONTROLLER),), goto=Table.ETH_DST),
            FlowMod(Table.ETH_DST, _PRIO_MISS, Match()),
        ]
        plain = sorted(self.plain_ports())
        bonds = sorted(self._bonds.values(), key=lambda b: b.group_id)
        for bond in bonds:
            for port in sorted(bond.members):
                flows.append(FlowMod(Table.INGRESS, _PRIO_LACP_PUNT, dataclasses.replace(_LACPDU, in_port=port),
                                     actions=(Output(OFPP_CONTROLLER),), meter=self._meter))
                if port in bond.collecting:
                    flows.append(FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=port),
                                         write_metadata=bond.logical, goto=Table.ETH_SRC))
                else:
                    flows.append(FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=port)))
        for port in plain:
            flows.append(FlowMod(Table.INGRESS, _PRIO_PORT, Match(in_port=port),
                                 write_metadata=port, goto=Table.ETH_SRC))
        for logical in plain + [b.logical for b in bonds]:
            actions: list[Output | Group] = [Output(p) for p in plain if p != logical]
            actions += [Group(b.group_id) for b in bonds if b.distributing and b.logical != logical]
            flows.append(FlowMod(Table.ETH_DST, _PRIO_FLOOD, Match(metadata=logical), actions=tuple(actions)))
        return [dataclasses.replace(f, cookie=COOKIE) for f in flows]

    def _sync(self) -> list[Message]:
        """Send the static flows that differ from what is installed; delete the ones no longer wanted."""
        desired = {(f.table, f.priority, f.match): f for f in self._static_flows()}
        msgs: list[Message] = [
            dataclasses.replace(f, command=FlowCommand.DELETE_STRICT, actions=(), goto=None,
                                write_metadata=None, meter=None, cookie_mask=_ALL_BITS)
            for key, f in self._installed.items() if key not in desired
        ]
        msgs += [f for key, f in desired.items() if self._installed.get(key) != f]
        self._installed = desired
        return msgs
