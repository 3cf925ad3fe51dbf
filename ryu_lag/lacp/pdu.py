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
# The whole LACPDU in one pass: subtype, version; actor and partner TLVs (type, length,
# system priority, system, key, port priority, port, state, 3 reserved); collector TLV
# (type, length, max delay, 12 reserved); terminator TLV (type, length); 50 reserved.
_PDU = struct.Struct("!BB" + "BBH6sHHHB3x" * 2 + "BBH12x" + "BB50x")
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
        octet = int(self)
        return {name: bool(octet & bit) for name, bit in _BIT_NAMES}


_BIT_NAMES: tuple[tuple[str, int], ...] = tuple((bit.name.lower(), int(bit)) for bit in LacpState)

# Every state by its octet: indexing is far cheaper than calling LacpState(octet).
STATE_BY_OCTET: tuple[LacpState, ...] = tuple(LacpState(octet) for octet in range(256))


@dataclass(frozen=True)
class PortInfo:
    """Actor or partner information as carried in a LACPDU."""

    system_priority: int
    system: str
    key: int
    port_priority: int
    port: int
    state: LacpState


NULL_PORT_INFO = PortInfo(0, "00:00:00:00:00:00", 0, 0, 0, LacpState(0))


@dataclass(frozen=True)
class Lacpdu:
    """A decoded LACPDU."""

    actor: PortInfo
    partner: PortInfo
    collector_max_delay: int = 0


def mac_to_bytes(mac: str) -> bytes:
    """``'aa:bb:cc:dd:ee:ff'`` to six octets; raises ValueError if malformed."""
    if len(mac) == 17 and mac[2::3] == ":::::":
        try:
            raw = bytes.fromhex(mac.replace(":", ""))
        except ValueError:
            pass
        else:
            if len(raw) == 6:  # fromhex skips whitespace: 12 hex digits give 6 octets, anything else fewer
                return raw
    raise ValueError(f"not a MAC address: {mac!r}")


def mac_to_str(raw: bytes) -> str:
    """Six octets to lowercase colon form."""
    return raw.hex(":")


_SLOW_PROTOCOLS_DST = mac_to_bytes(SLOW_PROTOCOLS_MAC)
_SLOW_ETH_TYPE = ETH_TYPE_SLOW.to_bytes(2, "big")


def encode_pdu(pdu: Lacpdu) -> bytes:
    """Encode the 110-octet LACPDU (subtype onward)."""
    actor, partner = pdu.actor, pdu.partner
    return _PDU.pack(
        SUBTYPE_LACP,
        LACP_VERSION,
        _TLV_ACTOR,
        _INFO_LEN,
        actor.system_priority,
        mac_to_bytes(actor.system),
        actor.key,
        actor.port_priority,
        actor.port,
        actor.state,
        _TLV_PARTNER,
        _INFO_LEN,
        partner.system_priority,
        mac_to_bytes(partner.system),
        partner.key,
        partner.port_priority,
        partner.port,
        partner.state,
        _TLV_COLLECTOR,
        _COLLECTOR_LEN,
        pdu.collector_max_delay,
        _TLV_TERMINATOR,
        0,
    )


def _decode_pdu_at(data: bytes, offset: int) -> Lacpdu:
    """Decode the LACPDU that starts ``offset`` octets into ``data``."""
    if len(data) - offset < PDU_LEN:
        raise PduError(f"truncated LACPDU: {len(data) - offset} octets, need {PDU_LEN}")
    (
        subtype,
        version,
        actor_type,
        actor_len,
        actor_system_priority,
        actor_system,
        actor_key,
        actor_port_priority,
        actor_port,
        actor_state,
        partner_type,
        partner_len,
        partner_system_priority,
        partner_system,
        partner_key,
        partner_port_priority,
        partner_port,
        partner_state,
        collector_type,
        collector_len,
        max_delay,
        terminator_type,
        terminator_len,
    ) = _PDU.unpack_from(data, offset)
    if subtype != SUBTYPE_LACP:
        raise PduError(f"not LACP: slow-protocols subtype {subtype}")
    if version < LACP_VERSION:
        raise PduError(f"bad LACP version {version}")
    if actor_type != _TLV_ACTOR or actor_len != _INFO_LEN:
        raise PduError(f"bad actor TLV: type {actor_type} length {actor_len}")
    if partner_type != _TLV_PARTNER or partner_len != _INFO_LEN:
        raise PduError(f"bad partner TLV: type {partner_type} length {partner_len}")
    if collector_type != _TLV_COLLECTOR or collector_len != _COLLECTOR_LEN:
        raise PduError(f"bad collector TLV: type {collector_type} length {collector_len}")
    if terminator_type != _TLV_TERMINATOR or terminator_len != 0:
        raise PduError("bad terminator TLV")
    actor = PortInfo(
        actor_system_priority,
        actor_system.hex(":"),
        actor_key,
        actor_port_priority,
        actor_port,
        STATE_BY_OCTET[actor_state],
    )
    partner = PortInfo(
        partner_system_priority,
        partner_system.hex(":"),
        partner_key,
        partner_port_priority,
        partner_port,
        STATE_BY_OCTET[partner_state],
    )
    return Lacpdu(actor, partner, max_delay)


def decode_pdu(data: bytes) -> Lacpdu:
    """Decode a LACPDU (subtype onward); raises PduError if malformed or truncated."""
    return _decode_pdu_at(data, 0)


def encode_frame(src_mac: str, pdu: Lacpdu) -> bytes:
    """A whole untagged Ethernet frame (no FCS) carrying ``pdu`` from ``src_mac``."""
    return _SLOW_PROTOCOLS_DST + mac_to_bytes(src_mac) + _SLOW_ETH_TYPE + encode_pdu(pdu)


def decode_frame(frame: bytes) -> tuple[str, Lacpdu]:
    """Decode an Ethernet frame; returns (source MAC, LACPDU) or raises PduError."""
    if len(frame) < ETH_HEADER_LEN:
        raise PduError(f"truncated frame: {len(frame)} octets")
    dst, src, eth_type = _ETH.unpack_from(frame, 0)
    if eth_type != ETH_TYPE_SLOW:
        raise PduError(f"not slow protocols: ethertype {eth_type:#06x}")
    if dst != _SLOW_PROTOCOLS_DST:
        raise PduError(f"not sent to the slow-protocols address: {mac_to_str(dst)}")
    return mac_to_str(src), _decode_pdu_at(frame, ETH_HEADER_LEN)
