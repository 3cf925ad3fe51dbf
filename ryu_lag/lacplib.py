"""A drop-in ``ryu.lib.lacplib`` backed by the ryu_lag LACP engine.

Change ``from ryu.lib import lacplib`` to ``from ryu_lag import lacplib`` and a
classic app keeps working: ``_CONTEXTS = {'lacplib': lacplib.LacpLib}``,
``add(dpid, ports)``, ``EventPacketIn``, ``EventSlaveStateChanged`` and
``LAG_EV_DISPATCHER`` are all here. Unlike the classic library it is a real
802.1AX actor: active by default, with its own key and system id, real
timers, link-down from PORT_STATUS at once, LACP only on configured member
ports, and frames from members that are not collecting dropped at ingress.

This module is a shell: ``LacpBond`` decides, the shell feeds it events with
``time.monotonic()`` and sends what it returns.

Events are raised with no dispatcher state (as the classic library did), so
observers receive them whatever state their handler names: the book's
``LAG_EV_DISPATCHER`` as well as Ryu 4.34's ``MAIN_DISPATCHER``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ryu.base import app_manager
from ryu.controller import event, ofp_event
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from ryu_lag.config import BondConfig, ConfigError
from ryu_lag.lacp import LacpBond, Update, encode_frame
from ryu_lag.lacp.bond import DEFAULT_PORT_PRIORITY, DEFAULT_SYSTEM_PRIORITY
from ryu_lag.lacp.pdu import mac_to_str
from ryu_lag.ofp_ryu import port_up, send
from ryu_lag.openflow import (
    ETH_TYPE_SLOW,
    OFPP_CONTROLLER,
    OFPP_LOCAL,
    SLOW_PROTOCOLS_MAC,
    FlowCommand,
    FlowMod,
    Match,
    Message,
    Output,
    PacketOut,
    Table,
)
from ryu_lag.service import system_id_from_dpid

LAG_EV_DISPATCHER = "lacplib"
"""The dispatcher name of the classic library; events are raised without a state, so it matches."""

TICK_INTERVAL = 0.05
COOKIE = 0x4C41_4350_0000_0000  # "LACP"
_ALL_BITS = (1 << 64) - 1
PUNT_PRIORITY = 0xFFFF
DROP_PRIORITY = 0xFFFE


class EventPacketIn(event.EventBase):
    """A packet-in that is not a slow-protocols frame."""

    def __init__(self, msg: Any) -> None:
        super().__init__()
        self.msg = msg


class EventSlaveStateChanged(event.EventBase):
    """Member ``port`` of ``datapath`` started (``enabled``) or stopped distributing."""

    def __init__(self, datapath: Any, port: int, enabled: bool) -> None:
        super().__init__()
        self.datapath = datapath
        self.port = port
        self.enabled = enabled


def punt_flow(port: int) -> FlowMod:
    """Send LACPDUs arriving on member ``port`` to the controller, before anything else."""
    match = Match(in_port=port, eth_type=ETH_TYPE_SLOW, eth_dst=SLOW_PROTOCOLS_MAC)
    return FlowMod(Table.INGRESS, PUNT_PRIORITY, match, actions=(Output(OFPP_CONTROLLER),), cookie=COOKIE)


def drop_flow(port: int, drop: bool) -> FlowMod:
    """Add (``drop``) or remove the rule discarding frames of a member that is not collecting."""
    command = FlowCommand.ADD if drop else FlowCommand.DELETE_STRICT
    return FlowMod(Table.INGRESS, DROP_PRIORITY, Match(in_port=port), command=command, cookie=COOKIE)


@dataclass
class _Bond:
    """A configured bond on a connected switch."""

    engine: LacpBond
    collecting: set[int] = field(default_factory=set)
    enabled: set[int] = field(default_factory=set)


@dataclass
class _Switch:
    """A connected switch: its member ports' MACs and its bonds."""

    datapath: Any
    macs: dict[int, str]
    bonds: list[_Bond] = field(default_factory=list)

    def bond_of(self, port: int) -> _Bond | None:
        return next((b for b in self.bonds if port in b.engine.members), None)


class LacpLib(app_manager.RyuApp):
    """LACP for the bonds given to :meth:`add`; raises the classic library's events."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _EVENTS = [EventPacketIn, EventSlaveStateChanged]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = "lacplib"  # observers find the brick by the module name's last part
        self._configs: dict[int, list[BondConfig]] = {}
        self._switches: dict[int, _Switch] = {}

    def start(self) -> Any:
        thread = super().start()
        self.threads.append(hub.spawn(self._ticker))
        return thread

    # ---- configuration -------------------------------------------------------
    def add(
        self,
        dpid: int,
        ports: list[int],
        *,
        mode: str = "active",
        rate: str = "slow",
        key: int | None = None,
        system_priority: int = DEFAULT_SYSTEM_PRIORITY,
        port_priority: int = DEFAULT_PORT_PRIORITY,
        min_links: int = 1,
    ) -> BondConfig:
        """Bond ``ports`` of switch ``dpid``; call once per bond. Raises ConfigError.

        ``key`` defaults to the smallest key unused on that switch. A bond added
        while its switch is connected starts at once.
        """
        if isinstance(dpid, bool) or not isinstance(dpid, int) or not 0 <= dpid <= _ALL_BITS:
            raise ConfigError("dpid", "an integer 0..2**64-1 is required")
        existing = self._configs.get(dpid, [])
        used_keys = {c.key for c in existing}
        if key is None:
            key = next(k for k in range(1, 0x10000) if k not in used_keys)
        data = {
            "ports": ports,
            "mode": mode,
            "rate": rate,
            "system_priority": system_priority,
            "port_priority": port_priority,
            "min_links": min_links,
        }
        config = BondConfig.from_dict(dpid, data, name=f"bond{len(existing)}", key=key)
        for other in existing:
            shared = set(other.ports) & set(config.ports)
            if shared:
                raise ConfigError("ports", f"port {min(shared)} is already in a bond of switch {dpid:016x}")
            if other.key == config.key:
                raise ConfigError("key", f"key {config.key} is already used on switch {dpid:016x}")
        self._configs.setdefault(dpid, []).append(config)
        switch = self._switches.get(dpid)
        if switch is not None:
            self._apply(switch, config, time.monotonic())
        return config

    def _execute(self, switch: _Switch, bond: _Bond, update: Update) -> None:
        """Send the engine's LACPDUs, gate ingress on collecting, raise slave events."""
        messages: list[Message] = []
        for tx in update.transmit:
            mac = switch.macs.get(tx.port)
            if mac is not None:
                messages.append(PacketOut(tx.port, encode_frame(mac, tx.pdu)))
        events = []
        for change in update.changes:
            if change.collecting != (change.port in bond.collecting):
                bond.collecting ^= {change.port}
                messages.append(drop_flow(change.port, not change.collecting))
            if change.distributing != (change.port in bond.enabled):
                bond.enabled ^= {change.port}
                events.append(EventSlaveStateChanged(switch.datapath, change.port, change.distributing))
        send(switch.datapath, messages)
        for ev in events:
            self.logger.info(
                "switch %016x port %d %s distributing", switch.datapath.id, ev.port, "started" if ev.enabled else "stopped"
            )
            self.send_event_to_observers(ev)

    def _apply(self, switch: _Switch, config: BondConfig, now: float) -> None:
        dp = switch.datapath
        local = dp.ports.get(OFPP_LOCAL)
        system = config.system or (local.hw_addr if local is not None else system_id_from_dpid(dp.id))
        bond = _Bond(LacpBond(config.settings(), system, config.ports))
        switch.bonds.append(bond)
        send(switch.datapath, [m for port in config.ports for m in (punt_flow(port), drop_flow(port, True))])
        for port in config.ports:
            desc = dp.ports.get(port)
            if desc is not None and port_up(desc):
                self._execute(switch, bond, bond.engine.set_link(port, True, now))

    # ---- clock -----------------------------------------------------------------
    def _ticker(self) -> None:
        while True:
            hub.sleep(TICK_INTERVAL)
            try:
                self.tick(time.monotonic())
            except Exception:  # noqa: BLE001 - the clock must keep running
                self.logger.exception("error in LACP tick")

    def tick(self, now: float) -> None:
        """Run every bond's timers (the green thread calls this every TICK_INTERVAL)."""
        for switch in list(self._switches.values()):
            for bond in switch.bonds:
                self._execute(switch, bond, bond.engine.tick(now))

    # ---- OpenFlow events ---------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            if dp.ofproto.OFP_VERSION != ofproto_v1_3.OFP_VERSION:
                self.logger.error("switch %016x does not speak OpenFlow 1.3: no LACP", dp.id)
                return
            self._forget(dp.id)  # a reconnection before the old connection's DEAD
            macs = {no: p.hw_addr for no, p in dp.ports.items() if no <= dp.ofproto.OFPP_MAX}
            switch = _Switch(dp, macs)
            self._switches[dp.id] = switch
            # Forget flows a previous run left behind, then set up every bond.
            send(switch.datapath, [FlowMod(Table.INGRESS, 0, Match(), FlowCommand.DELETE, cookie=COOKIE, cookie_mask=_ALL_BITS)])
            now = time.monotonic()
            for config in self._configs.get(dp.id, []):
                self._apply(switch, config, now)
        elif (switch := self._switches.get(dp.id)) is not None and switch.datapath is dp:
            self._forget(dp.id)

    def _forget(self, dpid: int) -> None:
        """Drop a switch's runtime; its distributing members are reported disabled."""
        switch = self._switches.pop(dpid, None)
        if switch is not None:
            for bond in switch.bonds:
                for port in sorted(bond.enabled):
                    self.send_event_to_observers(EventSlaveStateChanged(switch.datapath, port, False))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        switch = self._switches.get(msg.datapath.id)
        if switch is None or msg.desc.port_no > msg.datapath.ofproto.OFPP_MAX:
            return
        port = msg.desc.port_no
        deleted = msg.reason == msg.datapath.ofproto.OFPPR_DELETE
        if deleted:
            switch.macs.pop(port, None)
        else:
            switch.macs[port] = msg.desc.hw_addr
        bond = switch.bond_of(port)
        if bond is not None:
            up = not deleted and port_up(msg.desc)
            self._execute(switch, bond, bond.engine.set_link(port, up, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        data = bytes(msg.data)
        in_port = msg.match["in_port"]
        switch = self._switches.get(msg.datapath.id)
        bond = switch.bond_of(in_port) if switch is not None else None
        if len(data) >= 14 and int.from_bytes(data[12:14], "big") == ETH_TYPE_SLOW:
            # Slow protocols are never forwarded; only members' LACPDUs reach the engine.
            if bond is not None and mac_to_str(data[0:6]) == SLOW_PROTOCOLS_MAC:
                self._execute(switch, bond, bond.engine.receive_frame(in_port, data, time.monotonic()))
            return
        if bond is not None and in_port not in bond.collecting:
            return  # a member that is not collecting discards (its drop flow may be in flight)
        self.send_event_to_observers(EventPacketIn(msg))
