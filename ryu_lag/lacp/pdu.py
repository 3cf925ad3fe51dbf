"""LACPDU codec (IEEE 802.1AX-2008 clause 5.4.2), stdlib only.

A LACPDU is 110 octets behind a 14-octet Ethernet header (124 octets without
FCS). Decoding is strict: anything truncated, of another subtype, or with a
wrong TLV type or length raises :class:`PduError`; nothing is half-parsed.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

SLOW_PROTOCOLS_MAC = "01:80:c2:00:00:02"
ETH_TYPE_SLOW = 0x8809
SUBTYPE_LACP = 1
LACP_VERSION = 1
PDU_LEN = 110
ETH_HEADER_LEN = 14
FRAME_LEN = ETH_HEADER_LEN + PDU_LEN

_TLV_ACTOR, _TLV_PARTNER, _TLV_COLLECTOR, _TLV_TERMINATOR = 1, 2, 3, 0
_INFO_LEN, _COLLECTOR_LEN = 20, 16
# type, length, system priority, system, key, port priority, port, state, reserved
_INFO = struct.Struct("!BBH6sHHHB3x")
_COLLECTOR = struct.Struct("!BBH12x")
_HEADER = struct.Struct("!BB")
_ETH = struct.Struct("!6s6sH")


class PduError(ValueError):
    """A frame that is not a well-formed LACPDU."""


class LacpState(enum.IntFlag):
    """The eight actor/partner state bits, bit 0 first."""

    ACTIVITY = 0x01
    TIMEOUT = 0x02  # set: short timeout (fast rate)
    AGGREGATION = 0x04
    SYNCHRONIZATION = 0x08
    COLLECTING = 0x10
    DISTRIBUTING = 0x20
    DEFAULTED = 0x40
    EXPIRED = 0x80

    def names(self) -> dict[str, bool]:
        """Every bit by lowercase name, e.g. ``{'activity': True, ...}``."""
        return {bit.name.lower(): bool(self & bit) for bit in LacpState}


@dataclass(frozen=True)
class PortInfo:
    """Actor or partner information as carried in a LACPDU."""

    system_priority: int
    system: str
    key: int
    port_priority: int
    port: int
    state: LacpState

    def same_port(self, other: PortInfo) -> bool:
        """True when both name the same port of the same system (state ignored)."""
        return (
            self.system_priority,
            self.system,
            self.key,
            self.port_priority,
            self.port,
        ) == (other.system_priority, other.system, other.key, other.port_priority, other.port)


NULL_PORT_INFO = PortInfo(0, "00:00:00:00:00:00", 0, 0, 0, LacpState(0))


@dataclass(frozen=True)
class Lacpdu:
    """A decoded LACPDU."""

    actor: PortInfo
    partner: PortInfo
    collector_max_delay: int = 0


def mac_to_bytes(mac: str) -> bytes:
    """``'aa:bb:cc:dd:ee:ff'`` to six octets; raises ValueError if malformed."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_to_str(raw: bytes) -> str:
    """Six octets to lowercase colon form."""
    return ":".join(f"{b:02x}" for b in raw)


def _encode_info(tlv_type: int, info: PortInfo) -> bytes:
    return _INFO.pack(
        tlv_type,
        _INFO_LEN,
        info.system_priority,
        mac_to_bytes(info.system),
        info.key,
        info.port_priority,
        info.port,
        int(info.state),
    )


def _decode_info(tlv_type: int, data: bytes, offset: int) -> PortInfo:
    got_type, length, sys_prio, system, key, port_prio, port, state = _INFO.unpack_from(data, offset)
    if got_type != tlv_type or length != _INFO_LEN:
        raise PduError(f"bad TLV at offset {offset}: type {got_type} length {length}")
    return PortInfo(sys_prio, mac_to_str(system), key, port_prio, port, LacpState(state))


def encode_pdu(pdu: Lacpdu) -> bytes:
    """Encode the 110-octet LACPDU (subtype onward)."""
    body = (
        _HEADER.pack(SUBTYPE_LACP, LACP_VERSION)
        + _encode_info(_TLV_ACTOR, pdu.actor)
        + _encode_info(_TLV_PARTNER, pdu.partner)
        + _COLLECTOR.pack(_TLV_COLLECTOR, _COLLECTOR_LEN, pdu.collector_max_delay)
        + _HEADER.pack(_TLV_TERMINATOR, 0)
    )
    return body + bytes(PDU_LEN - len(body))


def decode_pdu(data: bytes) -> Lacpdu:
    """Decode a LACPDU (subtype onward); raises PduError if malformed or truncated."""
    if len(data) < PDU_LEN:
        raise PduError(f"truncated LACPDU: {len(data)} octets, need {PDU_LEN}")
    subtype, version = _HEADER.unpack_from(data, 0)
    if subtype != SUBTYPE_LACP:
        raise PduError(f"not LACP: slow-protocols subtype {subtype}")
    if version < LACP_VERSION:
        raise PduError(f"bad LACP version {version}")
    actor = _decode_info(_TLV_ACTOR, data, 2)
    partner = _decode_info(_TLV_PARTNER, data, 22)
    tlv_type, length, max_delay = _COLLECTOR.unpack_from(data, 42)
    if tlv_type != _TLV_COLLECTOR or length != _COLLECTOR_LEN:
        raise PduError(f"bad collector TLV: type {tlv_type} length {length}")
    if _HEADER.unpack_from(data, 58) != (_TLV_TERMINATOR, 0):
        raise PduError("bad terminator TLV")
    return Lacpdu(actor, partner, max_delay)


def encode_frame(src_mac: str, pdu: Lacpdu) -> bytes:
    """A whole untagged Ethernet frame (no FCS) carrying ``pdu`` from ``src_mac``."""
    header = _ETH.pack(mac_to_bytes(SLOW_PROTOCOLS_MAC), mac_to_bytes(src_mac), ETH_TYPE_SLOW)
    return header + encode_pdu(pdu)


def decode_frame(frame: bytes) -> tuple[str, Lacpdu]:
    """Decode an Ethernet frame; returns (source MAC, LACPDU) or raises PduError."""
    if len(frame) < ETH_HEADER_LEN:
        raise PduError(f"truncated frame: {len(frame)} octets")
    dst, src, eth_type = _ETH.unpack_from(frame, 0)
    if eth_type != ETH_TYPE_SLOW:
        raise PduError(f"not slow protocols: ethertype {eth_type:#06x}")
    if mac_to_str(dst) != SLOW_PROTOCOLS_MAC:
        raise PduError(f"not sent to the slow-protocols address: {mac_to_str(dst)}")
    return mac_to_str(src), decode_pdu(frame[ETH_HEADER_LEN:])
