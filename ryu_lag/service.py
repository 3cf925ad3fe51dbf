"""The controller core: every switch's bonds, LACP engines and learning switch.

``LagService`` takes switch events and configuration calls, each with ``now``,
and returns :class:`Effects`: OpenFlow messages per datapath and member state
changes. It reads no clock and sends nothing; ``ryu_lag.app`` is the shell that
does. Configuration goes through the store before it takes effect, so a
refused change leaves both untouched.

Rules it keeps for hitless operation:

- A switch that connects is resumed, not reset: each bond's LACP sessions come back
  from what was saved (at the last change, at a disconnect, at a planned stop), and
  the switch's pipeline is reconciled against what the switch reports it has.
- A bond keeps its group id for life (saved with its sessions), so the switch's
  groups and learned flows stay valid across restarts.
- A change of a live bond is a diff: only a new key or actor system id rebuilds it.
  A removed member is *leaving*: out of the group at once, its frames dropped, until
  the partner shows it has let go (or ``LEAVE_TIMEOUT``); then it is a plain port.

In a cluster every instance is connected to every switch, but only the switch's master
runs its bonds: for a *standby* switch the service keeps the ports and nothing else, and
sends nothing (:meth:`LagService.is_master`; the shell asks before sending). The master
saves every LACP session change in the shared store; taking over resumes from those
sessions exactly as a restart does (:meth:`LagService.take_over`). Configuration changes
made through other instances arrive from the store (:meth:`LagService.apply_changes`);
every write names the switch revision it was based on, so a concurrent change through
another instance makes it fail, never get lost.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable

from typing import Any

from ryu_lag.bfd import BfdUpdate, BondBfd, Discriminators, is_bfd_frame
from ryu_lag.config import BondConfig, ConfigError
from ryu_lag.lacp import LacpBond, Lacpdu, LacpState, MemberSession, Update
from ryu_lag.lacp.member import SHORT_TIMEOUT_TIME
from ryu_lag.lacp.pdu import (
    ETH_TYPE_SLOW,
    SLOW_PROTOCOLS_MAC,
    PduError,
    decode_frame,
    encode_frame,
    mac_to_bytes,
    mac_to_str,
)
from ryu_lag.openflow import Message, ObservedSwitch, PacketOut
from ryu_lag.stores import BondChange, Store, StoreError
from ryu_lag.switching import (
    BOND_GROUP_MAX,
    BOND_GROUP_MIN,
    DEFAULT_LACP_METER_PPS,
    DEFAULT_LEARN_METER_PPS,
    DEFAULT_MAX_MACS,
    Bond,
    LagSwitch,
)


class BondConflict(ConfigError):
    """A port already in another bond, or a bond name already taken."""


class UnknownBond(KeyError):
    """No such bond on that switch."""


TIMER_RETRY = 1.0
"""Seconds before the timers of a bond whose tick raised are tried again."""
LEAVE_TIMEOUT = SHORT_TIMEOUT_TIME
"""Seconds a member removed from its bond stays *leaving* when the partner does not show it let go."""
SAVE_RETRY = 5.0
"""Seconds before saving sessions is tried again after the store refused."""

_SLOW_PROTOCOLS_DST = mac_to_bytes(SLOW_PROTOCOLS_MAC)
_SLOW_ETH_TYPE = ETH_TYPE_SLOW.to_bytes(2, "big")


def is_lacpdu(frame: bytes) -> bool:
    """Whether a frame is addressed to the Slow Protocols group with the Slow Protocols ethertype."""
    return frame[12:14] == _SLOW_ETH_TYPE and frame[0:6] == _SLOW_PROTOCOLS_DST


@dataclass(frozen=True)
class PortDesc:
    """A physical port as the switch describes it."""

    port: int
    mac: str
    up: bool


@dataclass(frozen=True)
class MemberEvent:
    """A member started or stopped distributing (EventSlaveStateChanged's payload)."""

    dpid: int
    port: int
    enabled: bool


@dataclass(frozen=True)
class SavedBond:
    """What a bond needs to resume: its group id and its members' LACP sessions."""

    group_id: int
    members: dict[int, MemberSession]

    def to_dict(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "members": {str(p): s.to_dict() for p, s in sorted(self.members.items())}}

    @classmethod
    def from_dict(cls, data: Any) -> SavedBond:
        """Raises ValueError on anything malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("members"), dict):
            raise ValueError("a saved bond is an object with members")
        group_id = data.get("group_id")
        if not isinstance(group_id, int) or not BOND_GROUP_MIN <= group_id <= BOND_GROUP_MAX:
            raise ValueError(f"group id {group_id!r} out of range")
        return cls(group_id, {int(port): MemberSession.from_dict(s) for port, s in data["members"].items()})


@dataclass
class Effects:
    """What the shell must do: send ``messages``, announce ``member_events``, log ``errors``."""

    messages: list[tuple[int, Message]] = field(default_factory=list)
    member_events: list[MemberEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def send(self, dpid: int, msgs: Iterable[Message]) -> None:
        self.messages.extend((dpid, m) for m in msgs)

    def extend(self, other: Effects) -> None:
        """Add ``other``'s effects after these."""
        self.messages.extend(other.messages)
        self.member_events.extend(other.member_events)
        self.errors.extend(other.errors)

    def by_switch(self) -> dict[int, list[Message]]:
        """The messages per dpid, each switch's in order."""
        grouped: dict[int, list[Message]] = {}
        for dpid, msg in self.messages:
            grouped.setdefault(dpid, []).append(msg)
        return grouped


@dataclass
class BondRuntime:
    """A configured bond on a connected switch."""

    config: BondConfig
    group_id: int
    engine: LacpBond
    enabled: set[int] = field(default_factory=set)  # members distributing now
    wake_at: float = field(default=math.inf, init=False)  # when the service's timer heap ticks the engine next
    bfd: BondBfd | None = None  # BFD on the members; None: off
    bfd_wake_at: float = field(default=math.inf, init=False)  # when the BFD timer heap ticks it next


@dataclass
class SwitchRuntime:
    """A connected switch."""

    dpid: int
    ports: dict[int, PortDesc]
    system: str
    switch: LagSwitch
    bonds: dict[str, BondRuntime] = field(default_factory=dict)
    leaving: dict[int, float] = field(default_factory=dict)  # ports removed from a bond -> when they become plain
    master: bool = True  # False: a standby in a cluster (another instance sends for this switch)
    meters: bool = False  # whether the switch has usable meters (as the connect handshake found)
    _bond_by_port: dict[int, BondRuntime] = field(default_factory=dict, init=False, repr=False)  # checked on use

    def bond_of_port(self, port: int) -> BondRuntime | None:
        bond = self._bond_by_port.get(port)
        if bond is not None and self.bonds.get(bond.config.name) is bond and port in bond.engine.members:
            return bond
        bond = next((b for b in self.bonds.values() if port in b.engine.members), None)
        if bond is None:
            self._bond_by_port.pop(port, None)
        else:
            self._bond_by_port[port] = bond
        return bond


def system_id_from_dpid(dpid: int) -> str:
    """A locally administered MAC from the dpid, for switches without a LOCAL port."""
    raw = (dpid & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    return mac_to_str(bytes([(raw[0] | 0x02) & 0xFE]) + raw[1:])


class LagService:
    """All switches and bonds of one controller."""

    def __init__(
        self,
        store: Store,
        mac_age: int = 300,
        lacp_meter_pps: int = DEFAULT_LACP_METER_PPS,
        learn_meter_pps: int = DEFAULT_LEARN_METER_PPS,
        max_macs: int = DEFAULT_MAX_MACS,
    ) -> None:
        self.store = store
        self.mac_age = mac_age
        self.lacp_meter_pps = lacp_meter_pps
        self.learn_meter_pps = learn_meter_pps
        self.max_macs = max_macs
        snapshot = store.load()
        self.configs: dict[int, dict[str, BondConfig]] = {}
        for config in snapshot.bonds:
            self.configs.setdefault(config.dpid, {})[config.name] = config
        self.revisions: dict[int, int] = dict(snapshot.revisions)  # each switch's store revision as applied here
        self.saved: dict[tuple[int, str], SavedBond] = {}
        self._remember(snapshot.sessions)
        self._unsaved: set[tuple[int, str]] = set()  # bonds whose sessions changed since the last save
        self._save_after = -math.inf
        self.switches: dict[int, SwitchRuntime] = {}
        # (time, order, switch, bond): when each bond's engine has a timer due; stale entries are skipped
        self._lacp_timers: list[tuple[float, int, SwitchRuntime, BondRuntime]] = []
        self._timer_order = itertools.count()
        self._bfd_timers: list[tuple[float, int, SwitchRuntime, BondRuntime]] = []
        self._bfd_discriminators = Discriminators()
        self._leave_timers: list[tuple[float, int, int]] = []  # (time, dpid, port): when a leaving port becomes plain

    # ---- configuration ---------------------------------------------------
    def bond_configs(self, dpid: int) -> list[BondConfig]:
        return list(self.configs.get(dpid, {}).values())

    def next_key(self, dpid: int) -> int:
        """The smallest key not used by a bond of this switch."""
        used = {c.key for c in self.bond_configs(dpid)}
        return next(k for k in range(1, 0x10000) if k not in used)

    def next_name(self, dpid: int) -> str:
        used = set(self.configs.get(dpid, {}))
        return next(f"bond{i}" for i in range(len(used) + 1) if f"bond{i}" not in used)

    def put_bond(self, config: BondConfig, now: float, *, replace: bool = True) -> Effects:
        """Create (or, with ``replace``, replace) a bond; persisted before applied.

        Replacing a live bond applies only what changed; the same configuration again does nothing.
        Raises StoreConflict when the switch changed in the store since this instance's view of it.
        """
        old = self.configs.get(config.dpid, {}).get(config.name)
        if old is not None and not replace:
            raise BondConflict("name", f"bond {config.name!r} already exists")
        self._check_conflicts(config)
        if config == old:
            return Effects()
        self.revisions[config.dpid] = self.store.put_bond(config, expect=self.revisions.get(config.dpid, 0))
        return self._install(config, now)

    def delete_bond(self, dpid: int, name: str) -> Effects:
        """Delete a bond: its ports become plain ports again. Raises StoreConflict like ``put_bond``."""
        if name not in self.configs.get(dpid, {}):
            raise UnknownBond(name)
        self.revisions[dpid] = self.store.delete_bond(dpid, name, expect=self.revisions.get(dpid, 0))
        return self._uninstall(dpid, name)

    def apply_changes(self, changes: Iterable[BondChange], now: float) -> Effects:
        """Apply bond changes made in the store by other writers (other instances), in order.

        A change no newer than the switch's revision here (our own write coming back) is skipped.
        """
        effects = Effects()
        for change in changes:
            if change.revision <= self.revisions.get(change.dpid, 0):
                continue
            self.revisions[change.dpid] = change.revision
            if change.config is None:
                if change.name in self.configs.get(change.dpid, {}):
                    effects.extend(self._uninstall(change.dpid, change.name))
                continue
            try:
                self._check_conflicts(change.config)
            except BondConflict as exc:  # only a writer that skipped our checks makes this
                effects.errors.append(f"switch {change.dpid:016x} bond {change.name}: stored change not applied: {exc}")
                continue
            if change.config != self.configs.get(change.dpid, {}).get(change.name):
                effects.extend(self._install(change.config, now))
        return effects

    def _check_conflicts(self, config: BondConfig) -> None:
        """Refuse a bond that would share a port or a key with another bond of its switch."""
        for other in self.configs.get(config.dpid, {}).values():
            if other.name == config.name:
                continue
            shared = set(other.ports) & set(config.ports)
            if shared:
                raise BondConflict("ports", f"port {min(shared)} is already in bond {other.name!r}")
            if other.key == config.key:
                raise BondConflict("key", f"key {config.key} is already used by bond {other.name!r}")

    def _install(self, config: BondConfig, now: float) -> Effects:
        """Make a stored bond configuration the running one: a diff on a live bond, else a (re)build."""
        effects = Effects()
        existing = self.configs.setdefault(config.dpid, {})
        old = existing.get(config.name)
        existing[config.name] = config
        runtime = self.switches.get(config.dpid)
        bond = runtime.bonds.get(config.name) if runtime is not None else None
        if old is not None and (old.key, old.system) != (config.key, config.system):
            self.saved.pop((config.dpid, config.name), None)  # a new aggregator to the partner: no session carries over
        if runtime is None or not runtime.master:
            return effects  # applied when the switch connects, or when we take it over
        if bond is not None and old is not None and (old.key, old.system) == (config.key, config.system):
            self._reconfigure(runtime, bond, config, now, effects)
        else:
            self._unapply(runtime, config.name, effects)
            self._apply(runtime, config, now, effects)
        return effects

    def _uninstall(self, dpid: int, name: str) -> Effects:
        """Stop running a bond whose configuration is gone from the store."""
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is not None:
            self._unapply(runtime, name, effects)
        del self.configs[dpid][name]
        self.saved.pop((dpid, name), None)
        self._unsaved.discard((dpid, name))
        return effects

    def flush_macs(self, dpid: int, logical: int | None = None) -> Effects:
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is not None:
            effects.send(dpid, runtime.switch.flush(logical))
        return effects

    # ---- LACP sessions: saved off the PDU path ------------------------------------------
    def save_sessions(self, now: float, *, everything: bool = False) -> Effects:
        """Write the sessions of the bonds that changed since the last save (``everything``: of every bond).

        One transaction; a refused write is reported and retried ``SAVE_RETRY`` later. Only a
        switch's master runs its bonds, so only it saves. The shell calls this off the LACP
        clock's thread: a store that hangs (etcd unreachable) delays saving, never LACP.
        """
        effects = Effects()
        if everything:
            self._unsaved.update((dpid, name) for dpid, r in self.switches.items() for name in r.bonds)
        elif not self._unsaved or now < self._save_after:
            return effects
        for dpid, name in list(self._unsaved):
            runtime = self.switches.get(dpid)
            bond = runtime.bonds.get(name) if runtime is not None else None
            if bond is not None:
                self.saved[(dpid, name)] = SavedBond(bond.group_id, bond.engine.sessions())
        pending, self._unsaved = self._unsaved, set()  # what changes while the store writes is saved next time
        rows = [(d, n, self.saved[(d, n)].to_dict()) for d, n in sorted(pending) if (d, n) in self.saved]
        try:
            self.store.put_sessions(rows)
        except StoreError as exc:
            effects.errors.append(f"LACP sessions not saved (retrying in {SAVE_RETRY:g} s): {exc}")
            self._save_after = now + SAVE_RETRY
            self._unsaved |= pending
        return effects

    def farewell(self) -> Effects:
        """One last LACPDU on every distributing member, just before a planned stop.

        It restarts the partner's timeout, so the controller has a whole timeout to come back.
        """
        effects = Effects()
        for runtime in self.switches.values():
            for bond in runtime.bonds.values():
                for port in sorted(bond.enabled):
                    member = bond.engine.members[port]
                    desc = runtime.ports.get(port)
                    if desc is not None:
                        pdu = Lacpdu(actor=member.actor_info(), partner=member.partner)
                        effects.messages.append((runtime.dpid, PacketOut(port, encode_frame(desc.mac, pdu))))
        return effects

    # ---- switch events -----------------------------------------------------
    def switch_connected(
        self,
        dpid: int,
        ports: Iterable[PortDesc],
        local_mac: str | None,
        meters: bool,
        now: float,
        *,
        observed: ObservedSwitch | None = None,
        master: bool = True,
    ) -> Effects:
        """A switch (re)connected: resume its bonds' LACP sessions and reconcile what it has with what it should.

        ``observed`` is what the switch reported (our flows, its groups and meters); None when
        it could not be read, which makes this a cold start of our pipeline. Not ``master``:
        a standby, which only keeps the ports until :meth:`take_over`.
        """
        physical = {p.port: p for p in ports}
        runtime = self._runtime(dpid, physical, local_mac or system_id_from_dpid(dpid), meters, master)
        if not master:
            return Effects()
        resumed: list[tuple[BondRuntime, Update]] = []
        wanted: list[Bond] = []
        for config in self.bond_configs(dpid):
            saved = self.saved.get((dpid, config.name))
            bond = self._new_bond(runtime, config, saved.group_id if saved is not None else None)
            sessions = saved.members if saved is not None and saved.group_id == bond.group_id else {}
            up = [p for p in config.ports if p in physical and physical[p].up]
            update = bond.engine.resume(sessions, up, now)
            roles = {c.port: c for c in update.changes}
            collecting = frozenset(p for p, c in roles.items() if c.collecting)
            distributing = frozenset(p for p, c in roles.items() if c.distributing)
            wanted.append(Bond(bond.group_id, frozenset(config.ports), collecting, distributing, _bfd_dst(config)))
            resumed.append((bond, update))
        effects = Effects()
        effects.send(dpid, runtime.switch.resume(physical, meters, wanted, observed))
        for bond, update in resumed:  # the switch has their roles already: this sends their LACPDUs
            self._engine_update(runtime, bond, update, effects)
            for port in bond.config.ports:
                if port in physical and physical[port].up:
                    self._bfd_link(runtime, bond, port, True, now, effects)
        return effects

    def switch_disconnected(self, dpid: int) -> Effects:
        """The connection dropped; the switch goes on forwarding. Its bonds' sessions are kept for the reconnect."""
        effects = Effects()
        runtime = self.switches.pop(dpid, None)
        if runtime is None:
            return effects
        for name, bond in runtime.bonds.items():
            self.saved[(dpid, name)] = SavedBond(bond.group_id, bond.engine.sessions())
            if runtime.master:
                self._unsaved.add((dpid, name))
            effects.member_events.extend(MemberEvent(dpid, port, False) for port in sorted(bond.enabled))
        return effects

    # ---- mastership (a cluster) ----------------------------------------------------
    def is_master(self, dpid: int) -> bool:
        """Whether this instance acts for a connected switch (always, outside a cluster)."""
        runtime = self.switches.get(dpid)
        return runtime is not None and runtime.master

    def step_down(self, dpid: int) -> None:
        """Another instance is the switch's master now: stop running its bonds (its last
        sessions are in the store already), keep the ports."""
        runtime = self.switches.get(dpid)
        if runtime is not None and runtime.master:
            self._unsaved.difference_update((dpid, name) for name in runtime.bonds)
            self._runtime(dpid, runtime.ports, runtime.system, runtime.meters, master=False)

    def take_over(self, dpid: int, observed: ObservedSwitch | None, sessions: dict[str, Any], now: float) -> Effects:
        """Become the master of a standby switch that the switch has accepted us for.

        ``sessions``: the switch's bonds' LACP sessions by bond name, as the store has them
        (the old master saved each change); each member resumes from its session with a
        LACPDU at once. The pipeline as the old master left it (``observed``, read just now) is
        reconciled with ours: learned MACs come back from its flows, what matches sees no message.
        """
        runtime = self.switches.get(dpid)
        if runtime is None:
            return Effects()
        self._remember({(dpid, name): data for name, data in sessions.items()})
        return self.switch_connected(dpid, list(runtime.ports.values()), runtime.system, runtime.meters, now,
                                     observed=observed, master=True)

    def port_changed(self, dpid: int, port: PortDesc, now: float) -> Effects:
        """PORT_STATUS add/modify: link state goes to the engine at once."""
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None:
            return effects
        if port.port not in runtime.ports:
            effects.send(dpid, runtime.switch.port_added(port.port))  # a member stays a member
        runtime.ports[port.port] = port
        if port.port in runtime.leaving and not port.up:
            self._release(runtime, port.port, effects)  # the partner cannot send on it any more
        bond = runtime.bond_of_port(port.port)
        if bond is None:
            return effects
        self._engine_update(runtime, bond, bond.engine.set_link(port.port, port.up, now), effects)
        self._bfd_link(runtime, bond, port.port, port.up, now, effects)
        return effects

    def port_deleted(self, dpid: int, port_no: int, now: float) -> Effects:
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None or runtime.ports.pop(port_no, None) is None:
            return effects
        if port_no in runtime.leaving:
            self._release(runtime, port_no, effects)
        effects.send(dpid, runtime.switch.port_removed(port_no))
        bond = runtime.bond_of_port(port_no)
        if bond is not None:
            self._engine_update(runtime, bond, bond.engine.set_link(port_no, False, now), effects)
            self._bfd_link(runtime, bond, port_no, False, now, effects)
        return effects

    def packet_in(self, dpid: int, in_port: int, data: bytes, now: float) -> Effects:
        """A packet-in: LACPDUs go to their member's engine, other frames to learning."""
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None or len(data) < 14:
            return effects
        if is_lacpdu(data):
            bond = runtime.bond_of_port(in_port)
            if bond is not None:
                self._engine_update(runtime, bond, bond.engine.receive_frame(in_port, data, now), effects)
            elif in_port in runtime.leaving and partner_let_go(data):
                self._release(runtime, in_port, effects)
            return effects
        bond = runtime.bond_of_port(in_port)
        if bond is not None and bond.bfd is not None and is_bfd_frame(data, bond.bfd.config):
            self._bfd_update(runtime, bond, bond.bfd.receive_frame(in_port, data, now), now, effects)
            return effects
        eth_dst, eth_src = mac_to_str(data[0:6]), mac_to_str(data[6:12])
        effects.send(dpid, runtime.switch.packet_in(in_port, eth_src, eth_dst))
        return effects

    def flow_removed(self, dpid: int, metadata: int, eth_src: str) -> Effects:
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is not None:
            effects.send(dpid, runtime.switch.flow_removed(metadata, eth_src))
        return effects

    def tick(self, now: float) -> Effects:
        """Run the timers that are due; bonds with none due cost nothing."""
        effects = Effects()
        timers = self._lacp_timers
        due: list[tuple[float, int, SwitchRuntime, BondRuntime]] = []
        while timers and timers[0][0] <= now:  # taken first: what a bond schedules now waits for the next tick
            due.append(heapq.heappop(timers))
        for wake_at, _, runtime, bond in due:
            if bond.wake_at != wake_at or runtime.bonds.get(bond.config.name) is not bond:
                continue  # rescheduled earlier, or the bond is gone
            if self.switches.get(runtime.dpid) is not runtime:
                continue  # the switch disconnected or reconnected
            bond.wake_at = math.inf
            try:
                self._engine_update(runtime, bond, bond.engine.tick(now), effects)
            except Exception as exc:  # noqa: BLE001 - one broken bond must not stop the others' timers
                effects.errors.append(f"switch {runtime.dpid:016x} bond {bond.config.name}: LACP timers failed: {exc!r}")
                bond.wake_at = now + TIMER_RETRY
                heapq.heappush(self._lacp_timers, (bond.wake_at, next(self._timer_order), runtime, bond))
        bfd_timers = self._bfd_timers
        bfd_due = []
        while bfd_timers and bfd_timers[0][0] <= now:
            bfd_due.append(heapq.heappop(bfd_timers))
        for wake_at, _, runtime, bond in bfd_due:
            if bond.bfd_wake_at != wake_at or runtime.bonds.get(bond.config.name) is not bond or bond.bfd is None:
                continue
            if self.switches.get(runtime.dpid) is not runtime:
                continue
            bond.bfd_wake_at = math.inf
            self._bfd_update(runtime, bond, bond.bfd.tick(now), now, effects)
        leave = self._leave_timers
        while leave and leave[0][0] <= now:
            _, dpid, port = heapq.heappop(leave)
            runtime = self.switches.get(dpid)
            if runtime is not None and runtime.leaving.get(port, math.inf) <= now:
                self._release(runtime, port, effects)
        return effects

    def next_deadline(self) -> float:
        """When ``tick`` next has something to do (it may be early, never late); inf when nothing is scheduled."""
        return min(
            self._lacp_timers[0][0] if self._lacp_timers else math.inf,
            self._bfd_timers[0][0] if self._bfd_timers else math.inf,
            self._leave_timers[0][0] if self._leave_timers else math.inf,
        )

    # ---- internals ---------------------------------------------------------
    def _remember(self, sessions: dict[tuple[int, str], Any]) -> None:
        """Keep stored session state to resume bonds from; a malformed entry is dropped (a cache,
        not configuration: that bond negotiates afresh)."""
        for key, data in sessions.items():
            try:
                self.saved[key] = SavedBond.from_dict(data)
            except (ValueError, TypeError, KeyError):
                self.saved.pop(key, None)

    def _runtime(self, dpid: int, ports: dict[int, PortDesc], system: str, meters: bool, master: bool) -> SwitchRuntime:
        """A connected switch's runtime, without bonds yet, in place of any earlier one (whose timers lapse)."""
        runtime = SwitchRuntime(
            dpid=dpid, ports=ports, system=system,
            switch=LagSwitch(mac_age=self.mac_age, lacp_meter_pps=self.lacp_meter_pps,
                             learn_meter_pps=self.learn_meter_pps, max_macs=self.max_macs),
            master=master, meters=meters,
        )
        self.switches[dpid] = runtime
        return runtime

    def _new_bond(self, runtime: SwitchRuntime, config: BondConfig, group_id: int | None) -> BondRuntime:
        """A bond's runtime with its saved group id when that is free, else the smallest free one."""
        used = {b.group_id for b in runtime.bonds.values()}
        if group_id is None or group_id in used:
            group_id = next(g for g in range(BOND_GROUP_MIN, BOND_GROUP_MAX + 1) if g not in used)
        bfd = BondBfd(config.bfd, config.ports, self._bfd_discriminators) if config.bfd is not None else None
        bond = BondRuntime(config, group_id, LacpBond(config.settings(), config.system or runtime.system, config.ports), bfd=bfd)
        runtime.bonds[config.name] = bond
        return bond

    def _apply(self, runtime: SwitchRuntime, config: BondConfig, now: float, effects: Effects) -> None:
        """Add a bond to a connected switch; it negotiates from scratch."""
        for port in config.ports:
            if port in runtime.leaving:
                self._release(runtime, port, effects)
        bond = self._new_bond(runtime, config, None)
        effects.send(config.dpid, runtime.switch.add_bond(bond.group_id, config.ports))
        effects.send(config.dpid, runtime.switch.set_bfd(bond.group_id, _bfd_dst(config)))
        self._unsaved.add((config.dpid, config.name))
        for port in config.ports:
            desc = runtime.ports.get(port)
            if desc is not None and desc.up:
                self._engine_update(runtime, bond, bond.engine.set_link(port, True, now), effects)
                self._bfd_link(runtime, bond, port, True, now, effects)

    def _reconfigure(self, runtime: SwitchRuntime, bond: BondRuntime, config: BondConfig, now: float, effects: Effects) -> None:
        """Apply a changed configuration with the same key and system to a live bond: only what changed."""
        old_ports = set(bond.engine.members)
        added, removed = set(config.ports) - old_ports, old_ports - set(config.ports)
        for port in sorted(added & set(runtime.leaving)):
            self._release(runtime, port, effects)
        bond.config = config
        update = bond.engine.reconfigure(config.settings(), config.ports, now)
        effects.send(runtime.dpid, runtime.switch.set_members(bond.group_id, config.ports))  # removed ones leave the group first
        effects.send(runtime.dpid, runtime.switch.set_bfd(bond.group_id, _bfd_dst(config)))
        for port in sorted(removed):
            if port in bond.enabled:
                bond.enabled.discard(port)
                effects.member_events.append(MemberEvent(runtime.dpid, port, False))
            desc = runtime.ports.get(port)
            if desc is None or not desc.up:
                effects.send(runtime.dpid, runtime.switch.release(port))  # no partner to wait for
                continue
            runtime.leaving[port] = now + LEAVE_TIMEOUT
            heapq.heappush(self._leave_timers, (now + LEAVE_TIMEOUT, runtime.dpid, port))
        self._engine_update(runtime, bond, update, effects)
        if config.bfd is None and bond.bfd is not None:
            closed = [(p, True) for p, m in bond.engine.members.items() if not m.gate_open]
            bond.bfd = None
            self._bfd_update(runtime, bond, BfdUpdate(gate_changes=closed), now, effects)
        elif config.bfd is not None and bond.bfd is None:
            bond.bfd = BondBfd(config.bfd, config.ports, self._bfd_discriminators)
            for port in config.ports:
                desc = runtime.ports.get(port)
                if desc is not None and desc.up and port not in added:
                    self._bfd_link(runtime, bond, port, True, now, effects)
        elif config.bfd is not None and bond.bfd is not None:
            self._bfd_update(runtime, bond, bond.bfd.reconfigure(config.bfd, config.ports, now), now, effects)
        for port in sorted(added):
            desc = runtime.ports.get(port)
            if desc is not None and desc.up:
                self._engine_update(runtime, bond, bond.engine.set_link(port, True, now), effects)
                self._bfd_link(runtime, bond, port, True, now, effects)

    def _unapply(self, runtime: SwitchRuntime, name: str, effects: Effects) -> None:
        bond = runtime.bonds.pop(name, None)
        if bond is None:
            return
        effects.member_events.extend(MemberEvent(runtime.dpid, port, False) for port in sorted(bond.enabled))
        effects.send(runtime.dpid, runtime.switch.remove_bond(bond.group_id))

    def _release(self, runtime: SwitchRuntime, port: int, effects: Effects) -> None:
        """A leaving port becomes a plain port."""
        del runtime.leaving[port]
        effects.send(runtime.dpid, runtime.switch.release(port))

    def _engine_update(self, runtime: SwitchRuntime, bond: BondRuntime, update: Update, effects: Effects) -> None:
        """Turn an engine's update into effects and schedule the engine's next timer."""
        for tx in update.transmit:
            desc = runtime.ports.get(tx.port)
            if desc is not None:
                effects.messages.append((runtime.dpid, PacketOut(tx.port, encode_frame(desc.mac, tx.pdu))))
        if update.session_changed:
            self._unsaved.add((runtime.dpid, bond.config.name))
        deadline = bond.engine.deadline
        if deadline < bond.wake_at:
            bond.wake_at = deadline
            heapq.heappush(self._lacp_timers, (deadline, next(self._timer_order), runtime, bond))
        members = bond.engine.members
        for change in update.changes:
            port = change.port
            if port not in members:
                continue  # removed from the bond: it is leaving (see _reconfigure)
            effects.send(runtime.dpid, runtime.switch.set_member(bond.group_id, port, change.collecting, change.distributing))
            if change.distributing != (port in bond.enabled):
                bond.enabled.symmetric_difference_update({port})
                effects.member_events.append(MemberEvent(runtime.dpid, port, change.distributing))

    def _bfd_link(self, runtime: SwitchRuntime, bond: BondRuntime, port: int, up: bool, now: float,
                  effects: Effects) -> None:
        if bond.bfd is None:
            return
        desc = runtime.ports.get(port)
        self._bfd_update(runtime, bond, bond.bfd.set_link(port, up, now, desc.mac if desc else None), now, effects)

    def _bfd_update(self, runtime: SwitchRuntime, bond: BondRuntime, update: BfdUpdate, now: float,
                    effects: Effects) -> None:
        """Send a BFD update's frames, hand its gate changes to the LACP engine, schedule its next timer."""
        effects.messages.extend((runtime.dpid, PacketOut(port, frame)) for port, frame in update.transmit)
        for port, gate_open in update.gate_changes:
            if port in bond.engine.members:
                self._engine_update(runtime, bond, bond.engine.set_gate(port, gate_open, now), effects)
        if bond.bfd is not None and bond.bfd.deadline < bond.bfd_wake_at:
            bond.bfd_wake_at = bond.bfd.deadline
            heapq.heappush(self._bfd_timers, (bond.bfd_wake_at, next(self._timer_order), runtime, bond))


def _bfd_dst(config: BondConfig) -> str | None:
    """Where the BFD packets of a bond's partner go (what its members punt); None without BFD."""
    return config.bfd.dst_mac if config.bfd is not None else None


def partner_let_go(frame: bytes) -> bool:
    """Whether a LACPDU from a port we removed from its bond shows the partner recorded that (our Sync off)."""
    try:
        _, pdu = decode_frame(frame)
    except PduError:
        return False
    return not pdu.partner.state & LacpState.SYNCHRONIZATION
