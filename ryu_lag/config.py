"""Bond configuration: one validated, immutable value per bond.

``BondConfig.from_dict`` is the single place where user input (REST bodies,
stored rows, Python callers) becomes configuration; every rule raises
:class:`ConfigError` with a message naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from ryu_lag.bfd.bond import (
    DEFAULT_DST_MAC,
    MAX_INTERVAL_MS,
    MAX_MULTIPLIER,
    MIN_INTERVAL_MS,
    MIN_MULTIPLIER,
    BfdConfig,
)
from ryu_lag.bfd.packet import EncapsulationKind
from ryu_lag.lacp.bond import DEFAULT_PORT_PRIORITY, DEFAULT_SYSTEM_PRIORITY, BondSettings
from ryu_lag.lacp.member import Mode, Rate

MAX_PORT = 0xFFFFFF00  # OFPP_MAX: above are reserved ports
MAX_MEMBER_PORT = 0xFFFF  # a LACPDU carries the actor's port number in 16 bits
MAX_MEMBERS = 64
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # use fullmatch: "$" would take a trailing newline
MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
BFD_FIELDS = ("min_tx_ms", "min_rx_ms", "multiplier", "encapsulation", "dst_mac", "src_ip", "dst_ip")


class ConfigError(ValueError):
    """Invalid bond configuration; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def format_dpid(dpid: int) -> str:
    """A datapath id as 16 lowercase hex digits (Ryu's DPID_PATTERN form)."""
    return f"{dpid:016x}"


@dataclass(frozen=True)
class BondConfig:
    """One bond on one switch."""

    dpid: int
    name: str
    ports: tuple[int, ...]
    key: int
    mode: Mode = Mode.ACTIVE
    rate: Rate = Rate.SLOW
    system_priority: int = DEFAULT_SYSTEM_PRIORITY
    port_priority: int = DEFAULT_PORT_PRIORITY
    min_links: int = 1
    system: str | None = None  # actor system id override; default: the switch's LOCAL MAC
    bfd: BfdConfig | None = None  # BFD on the members; None: off

    FIELDS = ("name", "ports", "key", "mode", "rate", "system_priority", "port_priority", "min_links", "system", "bfd")

    @classmethod
    def from_dict(cls, dpid: int, data: dict[str, Any], *, name: str | None = None, key: int | None = None) -> BondConfig:
        """Validate ``data`` (JSON-like); ``name``/``key`` fill in when absent from it."""
        if not isinstance(data, dict):
            raise ConfigError("body", "must be a JSON object")
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise ConfigError(unknown[0], "unknown field")
        name = data.get("name", name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ConfigError("name", "1-32 characters of letters, digits, '_', '.', '-', starting with a letter or digit")
        ports = data.get("ports")
        if not isinstance(ports, list) or not ports:
            raise ConfigError("ports", "a non-empty list of port numbers is required")
        if len(ports) > MAX_MEMBERS:
            raise ConfigError("ports", f"at most {MAX_MEMBERS} members")
        for port in ports:
            if not _is_int(port) or not 1 <= port <= MAX_MEMBER_PORT:
                raise ConfigError("ports", f"{port!r} is not a member port number (1..{MAX_MEMBER_PORT}: LACP carries 16 bits)")
        if len(set(ports)) != len(ports):
            raise ConfigError("ports", "a port is listed twice")
        key = data.get("key", key)
        if not _is_int(key) or not 1 <= key <= 0xFFFF:
            raise ConfigError("key", "an integer 1..65535 is required")
        values = {
            "mode": _enum(Mode, data.get("mode", Mode.ACTIVE.value), "mode"),
            "rate": _enum(Rate, data.get("rate", Rate.SLOW.value), "rate"),
            "system_priority": _int(data, "system_priority", DEFAULT_SYSTEM_PRIORITY, 0, 0xFFFF),
            "port_priority": _int(data, "port_priority", DEFAULT_PORT_PRIORITY, 0, 0xFFFF),
            "min_links": _int(data, "min_links", 1, 1, MAX_MEMBERS),
        }
        if values["min_links"] > len(ports):
            raise ConfigError("min_links", f"{values['min_links']} is more than the {len(ports)} ports")
        system = data.get("system")
        if system is not None:
            if not isinstance(system, str) or not MAC_RE.fullmatch(system.lower()) or system.lower() == "00:00:00:00:00:00":
                raise ConfigError("system", "a MAC address such as 02:00:00:00:00:01")
            system = system.lower()
        bfd = data.get("bfd")
        if bfd is not None:
            bfd = bfd_config_from_dict(bfd)
        return cls(dpid=dpid, name=name, ports=tuple(sorted(ports)), key=key, system=system, bfd=bfd, **values)

    def settings(self) -> BondSettings:
        """The engine's view of this bond."""
        return BondSettings(
            key=self.key,
            mode=self.mode,
            rate=self.rate,
            system_priority=self.system_priority,
            port_priority=self.port_priority,
            min_links=self.min_links,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the inverse of ``from_dict``), with the dpid as 16 hex digits."""
        return {
            "dpid": format_dpid(self.dpid),
            "name": self.name,
            "ports": list(self.ports),
            "key": self.key,
            "mode": self.mode.value,
            "rate": self.rate.value,
            "system_priority": self.system_priority,
            "port_priority": self.port_priority,
            "min_links": self.min_links,
            "system": self.system,
            "bfd": self.bfd.to_dict() if self.bfd is not None else None,
        }


def bfd_config_from_dict(data: Any) -> BfdConfig:
    """Validate a bond's ``bfd`` object (absent fields take their defaults); errors name ``bfd.FIELD``."""
    if not isinstance(data, dict):
        raise ConfigError("bfd", "an object (e.g. {} for the defaults) or null (off) is required")
    unknown = sorted(set(data) - set(BFD_FIELDS))
    if unknown:
        raise ConfigError(f"bfd.{unknown[0]}", "unknown field")
    intervals = f"an integer {MIN_INTERVAL_MS}..{MAX_INTERVAL_MS} (milliseconds) is required"
    values: dict[str, Any] = {}
    for field, default, low, high, message in (
        ("min_tx_ms", BfdConfig.min_tx_ms, MIN_INTERVAL_MS, MAX_INTERVAL_MS, intervals),
        ("min_rx_ms", BfdConfig.min_rx_ms, MIN_INTERVAL_MS, MAX_INTERVAL_MS, intervals),
        ("multiplier", BfdConfig.multiplier, MIN_MULTIPLIER, MAX_MULTIPLIER,
         f"an integer {MIN_MULTIPLIER}..{MAX_MULTIPLIER} is required"),
    ):
        value = data.get(field, default)
        if not _is_int(value) or not low <= value <= high:
            raise ConfigError(f"bfd.{field}", message)
        values[field] = value
    kind = _enum(EncapsulationKind, data.get("encapsulation", EncapsulationKind.OVS.value), "bfd.encapsulation")
    dst_mac = data.get("dst_mac")
    if dst_mac is not None:
        if not isinstance(dst_mac, str) or not MAC_RE.fullmatch(dst_mac.lower()) or dst_mac.lower() == "00:00:00:00:00:00":
            raise ConfigError("bfd.dst_mac", "a MAC address such as 00:23:20:00:00:01")
        dst_mac = dst_mac.lower()
        if kind is EncapsulationKind.RFC7130 and dst_mac != DEFAULT_DST_MAC[kind]:
            raise ConfigError("bfd.dst_mac", f"RFC 7130 fixes it at {DEFAULT_DST_MAC[kind]}; another one needs encapsulation ovs")
    for field in ("src_ip", "dst_ip"):
        value = data.get(field, getattr(BfdConfig, field))
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            values[field] = str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ConfigError(f"bfd.{field}", f"{value!r} is not an IPv4 address such as 169.254.1.1") from None
    return BfdConfig(encapsulation=kind, dst_mac=dst_mac, **values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(data: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = data.get(field, default)
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(field, f"an integer {low}..{high} is required")
    return value


def _enum(kind: type[Mode] | type[Rate] | type[EncapsulationKind], value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = "|".join(m.value for m in kind)
        raise ConfigError(field, f"{value!r} is not one of {choices}") from None
