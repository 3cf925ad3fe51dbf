"""The controller core: every switch's bonds, LACP engines and learning switch.

``LagService`` takes switch events and configuration calls, each with ``now``,
and returns :class:`Effects`: OpenFlow messages per datapath and member state
changes. It reads no clock and sends nothing; ``ryu_lag.app`` is the shell that
does. Configuration goes through the store before it takes effect, so a
refused change leaves both untouched.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable

from ryu_lag.config import BondConfig, ConfigError
from ryu_lag.lacp import LacpBond, Update
from ryu_lag.lacp.pdu import ETH_TYPE_SLOW, SLOW_PROTOCOLS_MAC, encode_frame, mac_to_bytes, mac_to_str
from ryu_lag.openflow import Message, PacketOut
from ryu_lag.store import BondStore
from ryu_lag.switching import DEFAULT_LACP_METER_PPS, LagSwitch


class BondConflict(ConfigError):
    """A port already in another bond, or a bond name already taken."""


class UnknownBond(KeyError):
    """No such bond on that switch."""


TIMER_RETRY = 1.0
"""Seconds before the timers of a bond whose tick raised are tried again."""

_SLOW_PROTOCOLS_DST = mac_to_bytes(SLOW_PROTOCOLS_MAC)
_SLOW_ETH_TYPE = ETH_TYPE_SLOW.to_bytes(2, "big")


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


@dataclass
class Effects:
    """What the shell must do: send ``messages``, announce ``member_events``, log ``errors``."""

    messages: list[tuple[int, Message]] = field(default_factory=list)
    member_events: list[MemberEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def send(self, dpid: int, msgs: Iterable[Message]) -> None:
        self.messages.extend((dpid, m) for m in msgs)

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


@dataclass
class SwitchRuntime:
    """A connected switch."""

    dpid: int
    ports: dict[int, PortDesc]
    system: str
    switch: LagSwitch
    bonds: dict[str, BondRuntime] = field(default_factory=dict)
    _bond_by_port: dict[int, BondRuntime] = field(default_factory=dict, init=False, repr=False)  # checked on use

    def bond_of_port(self, port: int) -> BondRuntime | None:
        bond = self._bond_by_port.get(port)
        if bond is not None and self.bonds.get(bond.config.name) is bond:
            return bond  # still configured, so still has the port: a changed bond is a new BondRuntime
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

    def __init__(self, store: BondStore, mac_age: int = 300, lacp_meter_pps: int = DEFAULT_LACP_METER_PPS) -> None:
        self.store = store
        self.mac_age = mac_age
        self.lacp_meter_pps = lacp_meter_pps
        self.configs: dict[int, dict[str, BondConfig]] = {}
        for config in store.load_all():
            self.configs.setdefault(config.dpid, {})[config.name] = config
        self.switches: dict[int, SwitchRuntime] = {}
        # (time, order, switch, bond): when each bond's engine has a timer due; stale entries are skipped
        self._lacp_timers: list[tuple[float, int, SwitchRuntime, BondRuntime]] = []
        self._timer_order = itertools.count()

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
        """Create (or, with ``replace``, replace) a bond; persisted before applied."""
        existing = self.configs.get(config.dpid, {})
        if config.name in existing and not replace:
            raise BondConflict("name", f"bond {config.name!r} already exists")
        for other in existing.values():
            if other.name == config.name:
                continue
            shared = set(other.ports) & set(config.ports)
            if shared:
                raise BondConflict("ports", f"port {min(shared)} is already in bond {other.name!r}")
            if other.key == config.key:
                raise BondConflict("key", f"key {config.key} is already used by bond {other.name!r}")
        self.store.put(config)
        effects = Effects()
        if config.name in existing:
            self._unapply(config.dpid, config.name, effects)
        self.configs.setdefault(config.dpid, {})[config.name] = config
        self._apply(config, now, effects)
        return effects

    def delete_bond(self, dpid: int, name: str) -> Effects:
        """Delete a bond: its ports become plain ports again."""
        if name not in self.configs.get(dpid, {}):
            raise UnknownBond(name)
        self.store.delete(dpid, name)
        effects = Effects()
        self._unapply(dpid, name, effects)
        del self.configs[dpid][name]
        return effects

    def flush_macs(self, dpid: int, logical: int | None = None) -> Effects:
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is not None:
            effects.send(dpid, runtime.switch.flush(logical))
        return effects

    # ---- switch events -----------------------------------------------------
    def switch_connected(self, dpid: int, ports: Iterable[PortDesc], local_mac: str | None, meters: bool, now: float) -> Effects:
        """A switch (re)connected: reset it and apply its configured bonds."""
        physical = {p.port: p for p in ports}
        runtime = SwitchRuntime(
            dpid=dpid,
            ports=physical,
            system=local_mac or system_id_from_dpid(dpid),
            switch=LagSwitch(mac_age=self.mac_age, lacp_meter_pps=self.lacp_meter_pps),
        )
        self.switches[dpid] = runtime
        effects = Effects()
        effects.send(dpid, runtime.switch.startup(physical, meters))
        for config in self.bond_configs(dpid):
            self._apply(config, now, effects)
        return effects

    def switch_disconnected(self, dpid: int) -> Effects:
        effects = Effects()
        runtime = self.switches.pop(dpid, None)
        if runtime is not None:
            for bond in runtime.bonds.values():
                effects.member_events.extend(MemberEvent(dpid, port, False) for port in sorted(bond.enabled))
        return effects

    def port_changed(self, dpid: int, port: PortDesc, now: float) -> Effects:
        """PORT_STATUS add/modify: link state goes to the engine at once."""
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None:
            return effects
        if port.port not in runtime.ports:
            effects.send(dpid, runtime.switch.port_added(port.port))  # a member stays a member
        runtime.ports[port.port] = port
        bond = runtime.bond_of_port(port.port)
        if bond is None:
            return effects
        self._engine_update(runtime, bond, bond.engine.set_link(port.port, port.up, now), effects)
        return effects

    def port_deleted(self, dpid: int, port_no: int, now: float) -> Effects:
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None or runtime.ports.pop(port_no, None) is None:
            return effects
        effects.send(dpid, runtime.switch.port_removed(port_no))
        bond = runtime.bond_of_port(port_no)
        if bond is not None:
            self._engine_update(runtime, bond, bond.engine.set_link(port_no, False, now), effects)
        return effects

    def packet_in(self, dpid: int, in_port: int, data: bytes, now: float) -> Effects:
        """A packet-in: LACPDUs go to their member's engine, other frames to learning."""
        effects = Effects()
        runtime = self.switches.get(dpid)
        if runtime is None or len(data) < 14:
            return effects
        if data[12:14] == _SLOW_ETH_TYPE and data[0:6] == _SLOW_PROTOCOLS_DST:
            bond = runtime.bond_of_port(in_port)
            if bond is not None:
                self._engine_update(runtime, bond, bond.engine.receive_frame(in_port, data, now), effects)
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
        return effects

    # ---- internals ---------------------------------------------------------
    def _apply(self, config: BondConfig, now: float, effects: Effects) -> None:
        runtime = self.switches.get(config.dpid)
        if runtime is None:
            return  # applied when the switch connects
        used = {b.group_id for b in runtime.bonds.values()}
        group_id = next(g for g in range(1, len(used) + 2) if g not in used)
        bond = BondRuntime(config, group_id, LacpBond(config.settings(), config.system or runtime.system, config.ports))
        runtime.bonds[config.name] = bond
        effects.send(config.dpid, runtime.switch.add_bond(group_id, config.ports))
        for port in config.ports:
            desc = runtime.ports.get(port)
            if desc is not None and desc.up:
                self._engine_update(runtime, bond, bond.engine.set_link(port, True, now), effects)

    def _unapply(self, dpid: int, name: str, effects: Effects) -> None:
        runtime = self.switches.get(dpid)
        if runtime is None or name not in runtime.bonds:
            return
        bond = runtime.bonds.pop(name)
        effects.member_events.extend(MemberEvent(dpid, port, False) for port in sorted(bond.enabled))
        effects.send(dpid, runtime.switch.remove_bond(bond.group_id))

    def _engine_update(self, runtime: SwitchRuntime, bond: BondRuntime, update: Update, effects: Effects) -> None:
        """Turn an engine's update into effects and schedule the engine's next timer."""
        for tx in update.transmit:
            desc = runtime.ports.get(tx.port)
            if desc is not None:
                effects.messages.append((runtime.dpid, PacketOut(tx.port, encode_frame(desc.mac, tx.pdu))))
        deadline = bond.engine.deadline
        if deadline < bond.wake_at:
            bond.wake_at = deadline
            heapq.heappush(self._lacp_timers, (deadline, next(self._timer_order), runtime, bond))
        for change in update.changes:
            effects.send(
                runtime.dpid,
                runtime.switch.set_member(bond.group_id, change.port, change.collecting, change.distributing),
            )
            if change.distributing != (change.port in bond.enabled):
                bond.enabled.symmetric_difference_update({change.port})
                effects.member_events.append(MemberEvent(runtime.dpid, change.port, change.distributing))
