"""BFD control packets (RFC 5880 4.1) and the frames that carry them, stdlib only.

Rules this module keeps:
- :func:`decode_control` applies every reception check of RFC 5880 6.8.6 that needs no
  session: version 1; Length at least 24 and no more than the UDP payload; Detect Mult
  not 0; Multipoint clear; My Discriminator not 0; Your Discriminator not 0 unless the
  State is Down or AdminDown; Authentication Present clear (we run no authentication).
  Anything else raises :class:`BfdError`; nothing is half-parsed. The one check that
  needs a session (Your Discriminator names it) is the session's.
- :func:`decode_frame` takes an untagged Ethernet II frame and checks, in order: the
  ethertype is IPv4; the IPv4 header (version 4, IHL at least 5, header checksum, total
  length within the frame, not a fragment, protocol UDP, TTL 255 as RFC 5881 5 requires
  of single-hop BFD); the UDP destination port the encapsulation names, a UDP length
  within the IP payload, and the UDP checksum unless it is 0 (no checksum, allowed on
  IPv4). Ethernet padding after the IP packet is ignored. Addresses are reported, not
  checked: Open vSwitch sends 169.254.1.1 -> 169.254.1.0 from both ends by default.
- :func:`encode_frame` writes what Open vSwitch 3.1 writes (see tests/fixtures/
  bfd_ovs_frame.md): IPv4 TOS 0xc0, identification 0, no flags, TTL 255, UDP checksum 0,
  from a UDP source port in 49152-65535 that stays the same for the session (RFC 5881 4).
- Two encapsulations: Open vSwitch's (UDP 3784, Ethernet destination 00:23:20:00:00:01,
  169.254.1.1 -> 169.254.1.0 unless configured) and RFC 7130 micro-BFD (UDP 6784,
  Ethernet destination 01:00:5e:90:00:01); both IPv4, addresses configurable.
- Times in packets are microseconds, as on the wire.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field

from ryu_lag.lacp.pdu import mac_to_bytes, mac_to_str

BFD_VERSION = 1
CONTROL_LEN = 24  # the mandatory section; we send no authentication section
MAX_DISCRIMINATOR = 0xFFFFFFFF
MAX_INTERVAL_US = 0xFFFFFFFF
MAX_DETECT_MULT = 0xFF
MAX_DIAG = 0x1F

ETH_HEADER_LEN = 14
ETH_TYPE_IPV4 = 0x0800
IPV4_HEADER_LEN = 20
UDP_HEADER_LEN = 8
FRAME_LEN = ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + CONTROL_LEN  # 66: what we send
IP_PROTO_UDP = 17
BFD_TTL = 255  # RFC 5881 5: sent with 255, anything else received is discarded
BFD_TOS = 0xC0  # network control, as Open vSwitch sends
SOURCE_PORT_MIN = 49152  # RFC 5881 4: the source port range
SOURCE_PORT_MAX = 65535

OVS_UDP_PORT = 3784  # RFC 5881 single-hop control, which Open vSwitch uses
MICRO_BFD_UDP_PORT = 6784  # RFC 7130 2.2
OVS_DST_MAC = "00:23:20:00:00:01"  # Open vSwitch's bfd_dst_mac default
MICRO_BFD_DST_MAC = "01:00:5e:90:00:01"  # RFC 7130 2.3
OVS_SRC_IP = "169.254.1.1"  # Open vSwitch's bfd_src_ip default
OVS_DST_IP = "169.254.1.0"  # Open vSwitch's bfd_dst_ip default

_CONTROL = struct.Struct("!BBBBIIIII")
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")

_POLL, _FINAL, _CPI, _AUTH, _DEMAND, _MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
_MORE_FRAGMENTS_OR_OFFSET = 0x3FFF  # the MF flag and the 13-bit fragment offset


class BfdError(ValueError):
    """A frame or packet that is not a well-formed BFD control packet we may accept."""


class State(enum.IntEnum):
    """Session states (RFC 5880 4.1, the 2-bit State field)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 4.1); 9-31 are reserved and reach us as plain ints."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


def diag_name(code: int) -> str:
    """A diagnostic code in words, e.g. ``'control detection time expired'``."""
    try:
        return Diag(code).name.lower().replace("_", " ")
    except ValueError:
        return f"reserved ({code})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPacket:
    """A BFD control packet without authentication; intervals in microseconds.

    Authentication Present and Multipoint are not fields: a packet with either is never
    accepted (we run no authentication, and multipoint is reserved), so none carries them.
    """

    state: State
    diag: int = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    detect_mult: int
    my_discriminator: int
    your_discriminator: int
    desired_min_tx_us: int
    required_min_rx_us: int
    required_min_echo_rx_us: int = 0


def encode_control(packet: ControlPacket) -> bytes:
    """The 24-octet control packet."""
    flags = (
        (_POLL if packet.poll else 0)
        | (_FINAL if packet.final else 0)
        | (_CPI if packet.control_plane_independent else 0)
        | (_DEMAND if packet.demand else 0)
    )
    return _CONTROL.pack(
        BFD_VERSION << 5 | packet.diag,
        packet.state << 6 | flags,
        packet.detect_mult,
        CONTROL_LEN,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    )


_STATES: tuple[State, ...] = tuple(State)


def decode_control(data: bytes) -> ControlPacket:
    """Decode a control packet (the UDP payload); raises BfdError if RFC 5880 6.8.6 discards it."""
    if len(data) < CONTROL_LEN:
        raise BfdError(f"truncated BFD control packet: {len(data)} octets, need {CONTROL_LEN}")
    vers_diag, state_flags, detect_mult, length, my_disc, your_disc, min_tx, min_rx, min_echo = _CONTROL.unpack_from(
        data, 0
    )
    version = vers_diag >> 5
    if version != BFD_VERSION:
        raise BfdError(f"BFD version {version}, not {BFD_VERSION}")
    if state_flags & _AUTH:
        raise BfdError("authentication present, and we run no authentication")
    if length < CONTROL_LEN:
        raise BfdError(f"BFD length {length} is below {CONTROL_LEN}")
    if length > len(data):
        raise BfdError(f"BFD length {length} exceeds the {len(data)} octets carried")
    if detect_mult == 0:
        raise BfdError("detect mult 0")
    if state_flags & _MULTIPOINT:
        raise BfdError("multipoint bit set")
    if my_disc == 0:
        raise BfdError("my discriminator 0")
    state = _STATES[state_flags >> 6]
    if your_disc == 0 and state > State.DOWN:
        raise BfdError(f"your discriminator 0 in state {state.name}")
    return ControlPacket(
        state=state,
        diag=vers_diag & MAX_DIAG,
        poll=bool(state_flags & _POLL),
        final=bool(state_flags & _FINAL),
        control_plane_independent=bool(state_flags & _CPI),
        demand=bool(state_flags & _DEMAND),
        detect_mult=detect_mult,
        my_discriminator=my_disc,
        your_discriminator=your_disc,
        desired_min_tx_us=min_tx,
        required_min_rx_us=min_rx,
        required_min_echo_rx_us=min_echo,
    )


class EncapsulationKind(enum.Enum):
    OVS = "ovs"
    RFC7130 = "rfc7130"


_UDP_PORT_BY_KIND = {EncapsulationKind.OVS: OVS_UDP_PORT, EncapsulationKind.RFC7130: MICRO_BFD_UDP_PORT}


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data = data + b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_to_bytes(address: str) -> bytes:
    """Dotted quad to four octets; raises ValueError if malformed."""
    return ipaddress.IPv4Address(address).packed


@dataclass(frozen=True)
class Encapsulation:
    """How control packets travel on a member: Ethernet destination, IPv4 addresses, UDP port.

    Build one with :meth:`ovs` or :meth:`micro_bfd`; malformed addresses raise ValueError.
    """

    kind: EncapsulationKind
    dst_mac: str
    src_ip: str
    dst_ip: str
    _dst_mac_raw: bytes = field(init=False, repr=False, compare=False)
    _ip_header: bytes = field(init=False, repr=False, compare=False)  # the same for every packet we send

    def __post_init__(self) -> None:
        dst_mac_raw = mac_to_bytes(self.dst_mac)
        src, dst = _ipv4_to_bytes(self.src_ip), _ipv4_to_bytes(self.dst_ip)
        total = IPV4_HEADER_LEN + UDP_HEADER_LEN + CONTROL_LEN
        header = _IPV4.pack(0x45, BFD_TOS, total, 0, 0, BFD_TTL, IP_PROTO_UDP, 0, src, dst)
        header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
        object.__setattr__(self, "_dst_mac_raw", dst_mac_raw)
        object.__setattr__(self, "_ip_header", header)

    @classmethod
    def ovs(cls, dst_mac: str = OVS_DST_MAC, src_ip: str = OVS_SRC_IP, dst_ip: str = OVS_DST_IP) -> Encapsulation:
        """Open vSwitch's encapsulation (its ``bfd_dst_mac``, ``bfd_src_ip``, ``bfd_dst_ip``)."""
        return cls(EncapsulationKind.OVS, dst_mac, src_ip, dst_ip)

    @classmethod
    def micro_bfd(
        cls, src_ip: str = OVS_SRC_IP, dst_ip: str = OVS_DST_IP, dst_mac: str = MICRO_BFD_DST_MAC
    ) -> Encapsulation:
        """RFC 7130 micro-BFD; the addresses must be the ones the partner is configured with."""
        return cls(EncapsulationKind.RFC7130, dst_mac, src_ip, dst_ip)

    @property
    def udp_port(self) -> int:
        """The UDP destination port of control packets."""
        return _UDP_PORT_BY_KIND[self.kind]


def source_port(local_discriminator: int) -> int:
    """A UDP source port for a session: in 49152-65535, distinct for 16384 consecutive discriminators."""
    return SOURCE_PORT_MIN + local_discriminator % (SOURCE_PORT_MAX - SOURCE_PORT_MIN + 1)


def encode_frame(encapsulation: Encapsulation, src_mac: str, udp_src_port: int, packet: ControlPacket) -> bytes:
    """The 66-octet Ethernet frame (no FCS) carrying ``packet`` out of a port whose MAC is ``src_mac``."""
    if not SOURCE_PORT_MIN <= udp_src_port <= SOURCE_PORT_MAX:
        raise ValueError(f"UDP source port {udp_src_port} is outside {SOURCE_PORT_MIN}-{SOURCE_PORT_MAX}")
    return (
        _ETH.pack(encapsulation._dst_mac_raw, mac_to_bytes(src_mac), ETH_TYPE_IPV4)
        + encapsulation._ip_header
        + _UDP.pack(udp_src_port, encapsulation.udp_port, UDP_HEADER_LEN + CONTROL_LEN, 0)
        + encode_control(packet)
    )


@dataclass(frozen=True, slots=True)
class BfdFrame:
    """A decoded frame: where it came from and the control packet it carried."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    udp_src_port: int
    packet: ControlPacket


def _ip_str(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def decode_frame(frame: bytes, udp_port: int) -> BfdFrame:
    """Decode an Ethernet frame carrying a control packet to ``udp_port``; raises BfdError if malformed."""
    if len(frame) < ETH_HEADER_LEN + IPV4_HEADER_LEN:
        raise BfdError(f"truncated frame: {len(frame)} octets")
    dst_mac, src_mac, eth_type = _ETH.unpack_from(frame, 0)
    if eth_type != ETH_TYPE_IPV4:
        raise BfdError(f"not IPv4: ethertype {eth_type:#06x}")
    ver_ihl, _tos, total_len, _ident, frag, ttl, proto, _csum, src_ip, dst_ip = _IPV4.unpack_from(frame, ETH_HEADER_LEN)
    if ver_ihl >> 4 != 4:
        raise BfdError(f"IP version {ver_ihl >> 4}, not 4")
    header_len = (ver_ihl & 0x0F) * 4
    if header_len < IPV4_HEADER_LEN:
        raise BfdError(f"IPv4 header length {header_len} is below {IPV4_HEADER_LEN}")
    available = len(frame) - ETH_HEADER_LEN
    if header_len > available:
        raise BfdError(f"truncated IPv4 header: {available} octets, header length {header_len}")
    if _checksum(frame[ETH_HEADER_LEN : ETH_HEADER_LEN + header_len]) != 0:
        raise BfdError("bad IPv4 header checksum")
    if total_len > available:
        raise BfdError(f"IPv4 total length {total_len} exceeds the {available} octets carried")
    if total_len < header_len + UDP_HEADER_LEN:
        raise BfdError(f"IPv4 total length {total_len} leaves no room for a UDP header")
    if frag & _MORE_FRAGMENTS_OR_OFFSET:
        raise BfdError("IPv4 fragment")
    if proto != IP_PROTO_UDP:
        raise BfdError(f"not UDP: IP protocol {proto}")
    if ttl != BFD_TTL:
        raise BfdError(f"TTL {ttl}, not {BFD_TTL}")
    udp_at = ETH_HEADER_LEN + header_len
    src_port, dst_port, udp_len, udp_csum = _UDP.unpack_from(frame, udp_at)
    if dst_port != udp_port:
        raise BfdError(f"UDP destination port {dst_port}, not {udp_port}")
    if not UDP_HEADER_LEN <= udp_len <= total_len - header_len:
        raise BfdError(f"UDP length {udp_len} does not fit the {total_len - header_len}-octet IP payload")
    segment = frame[udp_at : udp_at + udp_len]
    if udp_csum != 0:
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IP_PROTO_UDP, udp_len)
        if _checksum(pseudo + segment) != 0:
            raise BfdError("bad UDP checksum")
    packet = decode_control(segment[UDP_HEADER_LEN:])
    return BfdFrame(mac_to_str(src_mac), mac_to_str(dst_mac), _ip_str(src_ip), _ip_str(dst_ip), src_port, packet)
