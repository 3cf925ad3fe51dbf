"""BFD codec: round trips, a frame captured from Open vSwitch, one test per malformed field, fuzzing."""

from __future__ import annotations

import ast
import pathlib
import random
import struct
from dataclasses import replace

import pytest

import ryu_lag.bfd
from ryu_lag.bfd.packet import (
    CONTROL_LEN,
    FRAME_LEN,
    MICRO_BFD_UDP_PORT,
    OVS_UDP_PORT,
    BfdError,
    BfdFrame,
    ControlPacket,
    Diag,
    Encapsulation,
    EncapsulationKind,
    State,
    decode_control,
    decode_frame,
    diag_name,
    encode_control,
    encode_frame,
    source_port,
)
from tests.unit.imports import imported_modules

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
SRC_MAC = "02:00:00:00:00:aa"
BFD_AT = 42  # where the control packet starts in a frame without IP options
IP_AT = 14

PACKET = ControlPacket(
    state=State.UP,
    diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
    poll=True,
    control_plane_independent=True,
    demand=True,
    detect_mult=5,
    my_discriminator=0x01020304,
    your_discriminator=0xFFFFFFFE,
    desired_min_tx_us=100_000,
    required_min_rx_us=250_000,
    required_min_echo_rx_us=7,
)


def good_frame(encapsulation: Encapsulation | None = None) -> bytearray:
    return bytearray(encode_frame(encapsulation or Encapsulation.ovs(), SRC_MAC, 49152, PACKET))


def internet_checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fix_ip_checksum(frame: bytearray) -> bytearray:
    """Recompute the IPv4 header checksum, so that a test reaches the check after it."""
    header_len = (frame[IP_AT] & 0x0F) * 4
    frame[IP_AT + 10 : IP_AT + 12] = b"\x00\x00"
    frame[IP_AT + 10 : IP_AT + 12] = internet_checksum(bytes(frame[IP_AT : IP_AT + header_len])).to_bytes(2, "big")
    return frame


def test_control_round_trip_keeps_every_field():
    raw = encode_control(PACKET)
    assert len(raw) == CONTROL_LEN == 24
    assert raw[0] == 0x21  # version 1, diag 1
    assert raw[1] == 0xC0 | 0x20 | 0x08 | 0x02  # Up, P, C, D
    assert decode_control(raw) == PACKET
    final = ControlPacket(
        state=State.INIT, final=True, detect_mult=1, my_discriminator=1, your_discriminator=2,
        desired_min_tx_us=1, required_min_rx_us=0,
    )  # fmt: skip
    assert encode_control(final)[1] == 0x80 | 0x10
    assert decode_control(encode_control(final)) == final


@pytest.mark.parametrize(
    "encapsulation, dst_mac, port",
    [
        (Encapsulation.ovs(), "00:23:20:00:00:01", OVS_UDP_PORT),
        (Encapsulation.micro_bfd(), "01:00:5e:90:00:01", MICRO_BFD_UDP_PORT),
        (Encapsulation.ovs("02:11:22:33:44:55", "10.0.0.1", "10.0.0.2"), "02:11:22:33:44:55", 3784),
        (Encapsulation.micro_bfd("192.0.2.1", "192.0.2.2"), "01:00:5e:90:00:01", 6784),
    ],
)
def test_frame_round_trip(encapsulation, dst_mac, port):
    frame = bytes(good_frame(encapsulation))
    assert len(frame) == FRAME_LEN == 66
    assert encapsulation.udp_port == port
    assert frame[:6].hex(":") == dst_mac and frame[6:12].hex(":") == SRC_MAC and frame[12:14] == b"\x08\x00"
    assert frame[IP_AT] == 0x45 and frame[IP_AT + 1] == 0xC0 and frame[IP_AT + 8] == 255  # IHL 5, TOS, TTL
    assert internet_checksum(frame[IP_AT : IP_AT + 20]) == 0
    assert struct.unpack_from("!HHHH", frame, 34) == (49152, port, 32, 0)
    assert decode_frame(frame, port) == BfdFrame(
        dst_mac=dst_mac,
        src_mac=SRC_MAC,
        src_ip=encapsulation.src_ip,
        dst_ip=encapsulation.dst_ip,
        udp_src_port=49152,
        packet=PACKET,
    )


def test_encapsulation_kinds_and_defaults():
    assert Encapsulation.ovs().kind is EncapsulationKind.OVS
    assert (Encapsulation.ovs().src_ip, Encapsulation.ovs().dst_ip) == ("169.254.1.1", "169.254.1.0")
    assert Encapsulation.micro_bfd().kind is EncapsulationKind.RFC7130
    assert EncapsulationKind("rfc7130") is EncapsulationKind.RFC7130


def test_decode_open_vswitch_capture():
    """66 octets sent by Open vSwitch 3.1.0's BFD (see tests/fixtures/bfd_ovs_frame.md)."""
    frame = bytes.fromhex((FIXTURES / "bfd_ovs_frame.hex").read_text().strip())
    expected = ast.literal_eval((FIXTURES / "bfd_ovs_frame.expected").read_text())
    decoded = decode_frame(frame, OVS_UDP_PORT)
    packet = decoded.packet
    assert (decoded.dst_mac, decoded.src_mac) == (expected["dst_mac"], expected["src_mac"])
    assert (decoded.src_ip, decoded.dst_ip, decoded.udp_src_port) == (
        expected["src_ip"],
        expected["dst_ip"],
        expected["udp_src_port"],
    )
    assert (frame[BFD_AT] >> 5, packet.diag) == expected["version_diag"]
    assert packet.state is State(expected["state"]) is State.DOWN
    assert (packet.poll, packet.final, packet.control_plane_independent, packet.demand) == expected["flags"]
    assert packet.detect_mult == expected["detect_mult"]
    assert (packet.my_discriminator, packet.your_discriminator) == expected["discriminators"]
    assert (
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    ) == expected["intervals_us"]
    # Our encoder writes the same 66 octets.
    assert encode_frame(Encapsulation.ovs(), decoded.src_mac, decoded.udp_src_port, packet) == frame
    with pytest.raises(BfdError, match="UDP destination port"):
        decode_frame(frame, MICRO_BFD_UDP_PORT)


# ---- control packet: the RFC 5880 6.8.6 reception checks, one per field -----------------
def control_with(offset: int, value: int) -> bytes:
    raw = bytearray(encode_control(PACKET))
    raw[offset] = value
    return bytes(raw)


@pytest.mark.parametrize(
    "raw, match",
    [
        (control_with(0, 0x41), "version 2"),
        (control_with(0, 0x01), "version 0"),
        (control_with(1, 0xC0 | 0x04), "authentication"),
        (control_with(3, 23), "length 23"),
        (control_with(3, 25), "length 25 exceeds"),
        (control_with(2, 0), "detect mult 0"),
        (control_with(1, 0xC0 | 0x01), "multipoint"),
        (encode_control(replace(PACKET, my_discriminator=0)), "my discriminator 0"),
        (encode_control(replace(PACKET, your_discriminator=0)), "your discriminator 0"),
        (
            encode_control(replace(PACKET, your_discriminator=0, state=State.INIT)),
            "your discriminator 0",
        ),
        (encode_control(PACKET)[:23], "truncated"),
        (b"", "truncated"),
    ],
)
def test_malformed_control_rejected(raw, match):
    with pytest.raises(BfdError, match=match):
        decode_control(raw)


@pytest.mark.parametrize("state", [State.DOWN, State.ADMIN_DOWN])
def test_your_discriminator_zero_accepted_while_down(state):
    packet = replace(PACKET, your_discriminator=0, state=state)
    assert decode_control(encode_control(packet)) == packet


def test_control_longer_than_24_within_payload_accepted():
    raw = bytearray(encode_control(PACKET)) + bytes(4)
    raw[3] = 28
    assert decode_control(bytes(raw)) == PACKET


def test_reserved_diagnostic_kept_as_a_number():
    raw = control_with(0, 0x20 | 31)
    assert decode_control(raw).diag == 31
    assert diag_name(31) == "reserved (31)"
    assert diag_name(Diag.NEIGHBOR_SIGNALED_SESSION_DOWN) == "neighbor signaled session down"


# ---- frames: one test per malformed field --------------------------------------------------
def mutate(offset: int, value: bytes, fix_checksum: bool = False) -> bytes:
    frame = good_frame()
    frame[offset : offset + len(value)] = value
    return bytes(fix_ip_checksum(frame) if fix_checksum else frame)


@pytest.mark.parametrize(
    "frame, match",
    [
        (mutate(12, b"\x86\xdd"), "not IPv4"),
        (mutate(12, b"\x81\x00"), "not IPv4"),  # a VLAN tag: members carry untagged BFD
        (mutate(IP_AT, b"\x65", fix_checksum=True), "IP version 6"),
        (mutate(IP_AT, b"\x44", fix_checksum=True), "header length 16"),
        (mutate(IP_AT, b"\x4f", fix_checksum=True), "truncated IPv4 header"),
        (mutate(IP_AT + 10, b"\x00\x00"), "IPv4 header checksum"),
        (mutate(IP_AT + 12, b"\x0a"), "IPv4 header checksum"),  # a changed source address
        (mutate(IP_AT + 2, struct.pack("!H", 53), fix_checksum=True), "total length 53 exceeds"),
        (mutate(IP_AT + 2, struct.pack("!H", 27), fix_checksum=True), "no room for a UDP header"),
        (mutate(IP_AT + 6, b"\x20\x00", fix_checksum=True), "fragment"),  # more fragments
        (mutate(IP_AT + 6, b"\x00\x01", fix_checksum=True), "fragment"),  # offset 8
        (mutate(IP_AT + 9, b"\x06", fix_checksum=True), "not UDP"),
        (mutate(IP_AT + 8, b"\xfe", fix_checksum=True), "TTL 254"),
        (mutate(IP_AT + 8, b"\x01", fix_checksum=True), "TTL 1"),
        (mutate(36, struct.pack("!H", 3785)), "UDP destination port 3785"),  # echo
        (mutate(36, struct.pack("!H", 4784)), "UDP destination port 4784"),  # multihop
        (mutate(38, struct.pack("!H", 33)), "UDP length 33"),
        (mutate(38, struct.pack("!H", 7)), "UDP length 7"),
        (mutate(38, struct.pack("!H", 31)), "truncated BFD control packet"),
        (mutate(40, b"\x12\x34"), "UDP checksum"),
        (mutate(BFD_AT + 3, b"\x19"), "length 25 exceeds"),  # BFD length beyond the UDP payload
        (mutate(BFD_AT + 2, b"\x00"), "detect mult 0"),  # the 6.8.6 checks apply inside frames too
    ],
)
def test_malformed_frame_rejected(frame, match):
    with pytest.raises(BfdError, match=match):
        decode_frame(frame, OVS_UDP_PORT)


@pytest.mark.parametrize("length", range(FRAME_LEN))
def test_truncated_frame_rejected(length):
    with pytest.raises(BfdError):
        decode_frame(bytes(good_frame()[:length]), OVS_UDP_PORT)


def with_udp_checksum(frame: bytearray) -> bytearray:
    src, dst = frame[IP_AT + 12 : IP_AT + 16], frame[IP_AT + 16 : IP_AT + 20]
    udp_len = struct.unpack_from("!H", frame, 38)[0]
    frame[40:42] = b"\x00\x00"
    pseudo = bytes(src + dst) + struct.pack("!BBH", 0, 17, udp_len)
    frame[40:42] = (internet_checksum(pseudo + bytes(frame[34 : 34 + udp_len])) or 0xFFFF).to_bytes(2, "big")
    return frame


def test_correct_udp_checksum_accepted():
    frame = with_udp_checksum(good_frame())
    assert frame[40:42] != b"\x00\x00"
    assert decode_frame(bytes(frame), OVS_UDP_PORT).packet == PACKET


def test_ethernet_padding_and_ip_options_accepted():
    padded = bytes(good_frame()) + bytes(10)
    assert decode_frame(padded, OVS_UDP_PORT).packet == PACKET
    frame = good_frame()
    # IHL 6: four octets of options (an end-of-options list) between the header and UDP.
    optioned = frame[:IP_AT] + bytearray([0x46]) + frame[IP_AT + 1 : IP_AT + 20] + bytes(4) + frame[IP_AT + 20 :]
    optioned[IP_AT + 2 : IP_AT + 4] = struct.pack("!H", 56)
    assert decode_frame(bytes(fix_ip_checksum(optioned)), OVS_UDP_PORT).packet == PACKET


def test_encoder_rejects_bad_source_port_and_addresses():
    for port in (0, 3784, 49151, 65536):
        with pytest.raises(ValueError):
            encode_frame(Encapsulation.ovs(), SRC_MAC, port, PACKET)
    for bad in ({"dst_mac": "00:23:20:00:00"}, {"src_ip": "169.254.1"}, {"dst_ip": "fe80::1"}):
        with pytest.raises(ValueError):
            Encapsulation.ovs(**bad)


def test_source_port_in_range_and_distinct():
    ports = [source_port(d) for d in range(1, 16385)]
    assert all(49152 <= p <= 65535 for p in ports)
    assert len(set(ports)) == 16384
    assert 49152 <= source_port(0xFFFFFFFF) <= 65535


# ---- garbage -----------------------------------------------------------------------------
def test_garbage_raises_only_bfd_error():
    """Random frames and random corruptions of a good one: a BfdFrame or BfdError, nothing else."""
    rng = random.Random(5880)
    good = bytes(good_frame())
    decoded = 0
    for _ in range(20000):
        kind = rng.random()
        if kind < 0.3:
            frame = rng.randbytes(rng.randrange(0, 120))
        elif kind < 0.6:  # a good frame with a few octets changed, the IP checksum kept right half the time
            frame = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            if rng.random() < 0.5:
                fix_ip_checksum(frame)
            frame = bytes(frame)
        else:  # good headers, a random control packet behind them
            frame = good[:BFD_AT] + rng.randbytes(CONTROL_LEN)
        try:
            result = decode_frame(frame, OVS_UDP_PORT)
        except BfdError:
            continue
        assert isinstance(result, BfdFrame)
        decoded += 1
    assert decoded > 100  # the fuzzing reached the end of decoding, not just the first checks


def test_package_is_stdlib_only():
    """The bfd package imports nothing outside the standard library, itself and ryu_lag.lacp's codec."""
    package = pathlib.Path(ryu_lag.bfd.__file__).parent
    allowed = {"__future__", "enum", "struct", "dataclasses", "heapq", "ipaddress", "math", "random", "typing"}
    for source in package.glob("*.py"):
        for name in imported_modules(source):
            if name.startswith("ryu_lag."):
                assert name.startswith(("ryu_lag.bfd", "ryu_lag.lacp.pdu")), f"{source.name} imports {name}"
            else:
                assert name.split(".")[0] in allowed, f"{source.name} imports {name}"
