"""LACPDU codec: round trip, a real Open vSwitch capture, one test per malformed field."""

from __future__ import annotations

import ast
import pathlib

import pytest

import ryu_lag.lacp
from ryu_lag.lacp.pdu import (
    FRAME_LEN,
    PDU_LEN,
    Lacpdu,
    LacpState,
    PduError,
    PortInfo,
    decode_frame,
    decode_pdu,
    encode_frame,
    encode_pdu,
)
from tests.unit.imports import imported_modules

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"

ACTOR = PortInfo(0x8000, "02:00:00:00:00:aa", 0x1234, 0x00FF, 7, LacpState(0x3D))
PARTNER = PortInfo(0xFFFF, "52:54:00:12:34:56", 0x0003, 0x8000, 0x0102, LacpState(0x47))


def good_frame() -> bytearray:
    return bytearray(encode_frame("02:00:00:00:00:aa", Lacpdu(ACTOR, PARTNER, 50)))


def test_round_trip_and_sizes():
    frame = encode_frame("02:00:00:00:00:aa", Lacpdu(ACTOR, PARTNER, 50))
    assert len(frame) == FRAME_LEN == 124
    assert len(encode_pdu(Lacpdu(ACTOR, PARTNER))) == PDU_LEN == 110
    src, pdu = decode_frame(frame)
    assert src == "02:00:00:00:00:aa"
    assert pdu == Lacpdu(ACTOR, PARTNER, 50)
    assert frame[:6] == bytes.fromhex("0180c2000002") and frame[12:14] == b"\x88\x09"
    assert frame[14:16] == b"\x01\x01"


def test_state_names():
    assert LacpState(0x3F).names() == {
        "activity": True,
        "timeout": True,
        "aggregation": True,
        "synchronization": True,
        "collecting": True,
        "distributing": True,
        "defaulted": False,
        "expired": False,
    }


def test_decode_open_vswitch_capture():
    """Bytes captured from Open vSwitch 3.1.0's LACP (see tests/fixtures/README.md)."""
    frame = bytes.fromhex((FIXTURES / "ovs_lacpdu.hex").read_text().strip())
    expected = ast.literal_eval((FIXTURES / "ovs_lacpdu.expected").read_text())
    src, pdu = decode_frame(frame)
    assert src == expected["src"]
    assert (pdu.actor.system_priority, pdu.actor.system, pdu.actor.key) == expected["actor_system"]
    assert (pdu.actor.port_priority, pdu.actor.port, int(pdu.actor.state)) == expected["actor_port"]
    assert (pdu.partner.system, pdu.partner.key, int(pdu.partner.state)) == expected["partner"]
    # Re-encoding gives back the same 124 octets.
    assert encode_frame(src, pdu) == frame[:FRAME_LEN]


@pytest.mark.parametrize(
    "offset, value, what",
    [
        (14, 2, "subtype"),  # marker protocol, not LACP
        (15, 0, "version"),
        (16, 9, "actor TLV type"),
        (17, 19, "actor TLV length"),
        (36, 1, "partner TLV type"),
        (37, 21, "partner TLV length"),
        (56, 0, "collector TLV type"),
        (57, 15, "collector TLV length"),
        (72, 3, "terminator type"),
        (73, 1, "terminator length"),
        (12, 0x08, "ethertype"),
        (0, 0xFF, "destination"),
    ],
)
def test_malformed_field_rejected(offset, value, what):
    frame = good_frame()
    frame[offset] = value
    with pytest.raises(PduError):
        decode_frame(bytes(frame))


@pytest.mark.parametrize("length", [0, 10, 14, 15, 60, FRAME_LEN - 1])
def test_truncated_rejected(length):
    with pytest.raises(PduError, match="truncated"):
        decode_frame(bytes(good_frame()[:length]))


def test_decode_pdu_rejects_short_payload():
    with pytest.raises(PduError):
        decode_pdu(encode_pdu(Lacpdu(ACTOR, PARTNER))[:-1])


def test_engine_is_stdlib_only():
    """The lacp package imports nothing outside the standard library and itself."""
    package = pathlib.Path(ryu_lag.lacp.__file__).parent
    for source in package.glob("*.py"):
        for name in imported_modules(source):
            top = name.split(".")[0]
            assert top in {"ryu_lag", "__future__", "enum", "struct", "dataclasses", "collections", "typing", "math"}, (
                f"{source.name} imports {name}"
            )
            if top == "ryu_lag":
                assert name.startswith("ryu_lag.lacp"), f"{source.name} imports {name}"
