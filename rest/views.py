"""JSON views of the service's state: plain dicts, dpids as 16 hex digits.

Read-only: nothing here changes the service. ``now`` is the service's clock
(``time.monotonic`` in the controller), used for "seconds since the last LACPDU".
"""

from __future__ import annotations

from typing import Any

from ryu_lag.bfd import BondBfd, diag_name
from ryu_lag.config import BondConfig, format_dpid
from ryu_lag.lacp import Member, PortInfo
from ryu_lag.lacp.bond import GATE_CLOSED
from ryu_lag.mastership import PROMOTING, ROLE_NAMES
from ryu_lag.openflow import Role
from ryu_lag.service import BondRuntime, LagService
from ryu_lag.switching import bond_group, is_bond

NOT_CONNECTED = "switch not connected"
ROLE_MASTER = ROLE_NAMES[Role.MASTER]
ROLE_EQUAL = ROLE_NAMES[Role.EQUAL]  # a single instance (no election) keeps it and acts as master
ROLES = (*ROLE_NAMES.values(), PROMOTING)
"""This instance's OpenFlow role on a switch, as ``app.cluster_status()`` names it."""


def known_dpids(service: LagService) -> list[int]:
    """Every switch that is connected or has bonds."""
    return sorted(set(service.switches) | {dpid for dpid, bonds in service.configs.items() if bonds})


def is_known(service: LagService, dpid: int) -> bool:
    return dpid in service.switches or bool(service.configs.get(dpid))


def switch_list(service: LagService) -> dict[str, Any]:
    """``GET /lag``: one summary per known switch."""
    return {
        "switches": [
            {
                "dpid": format_dpid(dpid),
                "connected": dpid in service.switches,
                "bond_count": len(service.configs.get(dpid, {})),
            }
            for dpid in known_dpids(service)
        ]
    }


def switch_view(service: LagService, dpid: int, now: float, master: str | None) -> dict[str, Any]:
    """``GET /lag/{dpid}``: the switch, its master instance (None: none known), its physical ports and all its bonds."""
    runtime = service.switches.get(dpid)
    ports: list[dict[str, Any]] = []
    if runtime is not None:
        for desc in sorted(runtime.ports.values(), key=lambda d: d.port):
            bond = runtime.bond_of_port(desc.port)
            name = bond.config.name if bond is not None else None
            ports.append({"port": desc.port, "mac": desc.mac, "up": desc.up, "bond": name})
    configs = service.configs.get(dpid, {})
    return {
        "dpid": format_dpid(dpid),
        "connected": runtime is not None,
        "master": master,
        "system": runtime.system if runtime is not None else None,
        "bond_count": len(configs),
        "ports": ports,
        "bonds": [bond_view(service, config, now) for config in configs.values()],
    }


def config_view(config: BondConfig) -> dict[str, Any]:
    """A bond's configuration as a ``PUT`` body (no dpid)."""
    data = config.to_dict()
    del data["dpid"]
    return data


def bond_view(service: LagService, config: BondConfig, now: float) -> dict[str, Any]:
    """A bond: its configuration, whether it is programmed and up, and every member's status."""
    runtime = service.switches.get(config.dpid)
    bond = runtime.bonds.get(config.name) if runtime is not None else None
    if bond is None:
        return {
            "dpid": format_dpid(config.dpid),
            "name": config.name,
            "config": config_view(config),
            "applied": False,
            "up": False,
            "distributing": 0,
            "group_id": None,
            "actor_system": None,
            "partner": None,
            "members": [_absent_member(port) for port in config.ports],
        }
    engine = bond.engine
    partner = None
    if engine.partner_id is not None:
        priority, system, key = engine.partner_id
        partner = {"system": system, "system_priority": priority, "key": key}
    return {
        "dpid": format_dpid(config.dpid),
        "name": config.name,
        "config": config_view(config),
        "applied": True,
        "up": engine.is_up(),
        "distributing": engine.distributing_count(),
        "group_id": bond.group_id,
        "actor_system": engine.system,
        "partner": partner,
        "members": [member_view(bond, port, now) for port in sorted(engine.members)],
    }


def selection(member: Member) -> str:
    """``selected``, ``unselected``, or ``standby``: selected, held back because the bond is below min_links.

    Held back: STANDBY (too few members can aggregate: no further than WAITING), or
    distributing, its BFD gate open, while too few members distribute yet.
    """
    if not member.selected:
        return "unselected"
    if member.standby or (member.distributing and member.gate_open and not member.enabled):
        return "standby"
    return "selected"


def member_view(bond: BondRuntime, port: int, now: float) -> dict[str, Any]:
    """One member's LACP status, and its BFD status (null when the bond runs no BFD).

    A member BFD holds out is not enabled, and its reason is BFD's.
    """
    member = bond.engine.members[port]
    bfd = bond.bfd
    reason = bond.engine.reason(port)
    last_rx = member.counters.last_rx
    return {
        "port": port,
        "link": "up" if member.link_up else "down",
        "mux": member.mux.value,
        "selection": selection(member),
        "enabled": member.enabled,
        "reason": bfd.reason(port) if reason == GATE_CLOSED and bfd is not None else reason,
        "rx_state": member.rx_state.value,
        "lacp_timeout": int(member.lacp_timeout_seconds()),
        "since_last_lacpdu": round(max(0.0, now - last_rx), 3) if last_rx is not None else None,
        "actor": port_info_view(member.actor_info()),
        "partner": port_info_view(member.partner),
        "counters": {
            "lacpdus_rx": member.counters.rx,
            "lacpdus_tx": member.counters.tx,
            "bad_rx": member.counters.bad_rx,
            "expirations": member.counters.expirations,
        },
        "bfd": bfd_member_view(bfd, port, now) if bfd is not None else None,
    }


def _ms(microseconds: int) -> float:
    return microseconds / 1000


def bfd_member_view(bfd: BondBfd, port: int, now: float) -> dict[str, Any]:
    """One member's BFD session: states, discriminators, diagnostics, agreed timers, counters, and its gate."""
    member = bfd.members[port]
    session = member.session
    counters = session.counters
    detection = session.detection_time_us
    last_rx, last_down = counters.last_rx, counters.last_down
    return {
        "state": session.state.name.lower(),
        "remote_state": session.remote_state.name.lower(),
        "local_discriminator": session.local_discriminator,
        "remote_discriminator": session.remote_discriminator,
        "local_diag": diag_name(session.local_diag),
        "remote_diag": diag_name(session.remote_diag),
        "tx_interval_ms": _ms(session.tx_interval_us),
        "rx_interval_ms": _ms(session.rx_interval_us),
        "detection_time_ms": _ms(detection) if detection is not None else None,
        "remote_multiplier": session.remote_detect_mult,
        "polling": session.polling,
        "since_last_packet": round(max(0.0, now - last_rx), 3) if last_rx is not None else None,
        "last_down": last_down.reason if last_down is not None else None,
        "gating": bfd.gating(port),
        "gate_open": bfd.gate_open(port),
        "reason": bfd.reason(port),
        "counters": {
            "packets_rx": counters.rx,
            "packets_tx": counters.tx,
            "bad_rx": counters.bad_rx,
            "state_changes": counters.state_changes,
        },
        "last_bad_reason": counters.last_bad_reason,
    }


def _absent_member(port: int) -> dict[str, Any]:
    """A member of a bond whose switch is not connected: nothing is known."""
    return {
        "port": port,
        "link": "down",
        "mux": "detached",
        "selection": "unselected",
        "enabled": False,
        "reason": NOT_CONNECTED,
        "rx_state": None,
        "lacp_timeout": 0,
        "since_last_lacpdu": None,
        "actor": None,
        "partner": None,
        "counters": {"lacpdus_rx": 0, "lacpdus_tx": 0, "bad_rx": 0, "expirations": 0},
        "bfd": None,
    }


def port_info_view(info: PortInfo) -> dict[str, Any]:
    """Actor or partner information with the eight state bits by name."""
    return {
        "system": info.system,
        "system_priority": info.system_priority,
        "key": info.key,
        "port": info.port,
        "port_priority": info.port_priority,
        "state": info.state.names(),
    }


def logical_name(service: LagService, dpid: int, logical: int) -> dict[str, Any]:
    """A logical port as ``{"port": n, "bond": null}`` or ``{"port": null, "bond": name}``."""
    if not is_bond(logical):
        return {"port": logical, "bond": None}
    runtime = service.switches[dpid]
    group = bond_group(logical)
    name = next((n for n, b in runtime.bonds.items() if b.group_id == group), None)
    return {"port": None, "bond": name}


def learned_macs(service: LagService, dpid: int, logical: int | None = None) -> dict[str, int]:
    """Learned MACs of a switch (mac -> logical port), optionally only one logical port's."""
    runtime = service.switches.get(dpid)
    if runtime is None:
        return {}
    return {mac: lp for mac, lp in runtime.switch.macs().items() if logical is None or lp == logical}


def macs_view(service: LagService, dpid: int, logical: int | None = None) -> dict[str, Any]:
    """``GET /lag/{dpid}/macs``: learned MACs with their logical port, sorted by MAC."""
    macs = learned_macs(service, dpid, logical)
    return {
        "dpid": format_dpid(dpid),
        "macs": [{"mac": mac, **logical_name(service, dpid, lp)} for mac, lp in sorted(macs.items())],
    }
