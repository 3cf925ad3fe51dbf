"""Property-based fuzzing of LACPDUs (hypothesis): the decoder and the service's packet-in path.

Random and mutated valid frames never raise anything but ``PduError`` from the decoder,
and nothing from ``LagService.packet_in``; a garbled frame on a member of a negotiated
bond is counted as bad on that member and changes nothing else of the bond.

CI size: ``LACPDU_FUZZ_EXAMPLES`` examples per property (default 300, a few seconds in
all). A long run, e.g. 100,000 cases per property::

    LACPDU_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/unit/test_lacpdu_fuzz.py -q
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryu_lag.lacp import Lacpdu, LacpState, PortInfo, encode_frame
from ryu_lag.lacp.pdu import ETH_HEADER_LEN, FRAME_LEN, PduError, decode_frame
from tests.unit.test_service import DPID, PARTNER_SYSTEM, Rig, fast_bond

EXAMPLES = int(os.environ.get("LACPDU_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared VM's pauses are not bugs
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 1000,  # the CI-sized run is the same every time; long runs explore
)

# Octets of a frame the decoder does not read as data: the version (any >= 1 is accepted),
# the reserved fields of the actor, partner and collector TLVs, and the trailing reserved
# octets. A frame that decodes re-encodes to the same octets everywhere else.
_PDU_IGNORED = {1, *range(19, 22), *range(39, 42), *range(46, 58), *range(60, 110)}
FRAME_IGNORED = frozenset(ETH_HEADER_LEN + i for i in _PDU_IGNORED)

u16 = st.integers(0, 0xFFFF)
macs = st.binary(min_size=6, max_size=6).map(lambda raw: raw.hex(":"))
port_infos = st.builds(
    PortInfo, system_priority=u16, system=macs, key=u16, port_priority=u16, port=u16,
    state=st.integers(0, 0xFF).map(LacpState),
)
pdus = st.builds(Lacpdu, actor=port_infos, partner=port_infos, collector_max_delay=u16)


@st.composite
def mutated_frames(draw: st.DrawFn, keep_ethernet: bool = False) -> bytes:
    """A valid LACPDU frame with some octets replaced, then cut short or extended.

    ``keep_ethernet``: the destination and ethertype stay those of slow protocols, so
    that the frame reaches the LACP engine of the port it arrives on.
    """
    frame = bytearray(encode_frame(draw(macs), draw(pdus)))
    first = ETH_HEADER_LEN if keep_ethernet else 0
    for position, octet in draw(st.lists(st.tuples(st.integers(first, FRAME_LEN - 1), st.integers(0, 0xFF)), max_size=6)):
        frame[position] = octet
    length = draw(st.integers(ETH_HEADER_LEN if keep_ethernet else 0, FRAME_LEN))
    return bytes(frame[:length]) + draw(st.binary(max_size=40))


@st.composite
def slow_protocol_frames(draw: st.DrawFn) -> bytes:
    """Random octets behind the slow-protocols destination and ethertype."""
    head = bytes.fromhex("0180c2000002") + draw(st.binary(min_size=6, max_size=6)) + b"\x88\x09"
    return head + draw(st.binary(max_size=FRAME_LEN))


any_frames = st.one_of(st.binary(max_size=2 * FRAME_LEN), mutated_frames(), slow_protocol_frames())
lacp_path_frames = st.one_of(mutated_frames(keep_ethernet=True), slow_protocol_frames())


def decodes(frame: bytes) -> bool:
    try:
        decode_frame(frame)
    except PduError:
        return False
    return True


# ---- the decoder -------------------------------------------------------------------


@FUZZ
@given(st.one_of(any_frames, lacp_path_frames))
def test_the_decoder_decodes_or_raises_pdu_error_only(frame: bytes) -> None:
    try:
        src, pdu = decode_frame(frame)
    except PduError:
        return
    # What it accepted is what a LACPDU encodes: every octet it reads is the re-encoding's.
    again = encode_frame(src, pdu)
    assert all(frame[i] == again[i] for i in range(FRAME_LEN) if i not in FRAME_IGNORED)


@FUZZ
@given(macs, pdus, st.binary(max_size=64))
def test_every_valid_lacpdu_decodes_to_itself_whatever_follows_it(src: str, pdu: Lacpdu, padding: bytes) -> None:
    assert decode_frame(encode_frame(src, pdu) + padding) == (src, pdu)


@FUZZ
@given(macs, pdus, st.integers(0, FRAME_LEN - 1))
def test_every_truncation_is_refused(src: str, pdu: Lacpdu, length: int) -> None:
    with pytest.raises(PduError):
        decode_frame(encode_frame(src, pdu)[:length])


# ---- the service's packet-in path --------------------------------------------------------


@pytest.fixture
def negotiated(tmp_path: Path) -> Rig:
    """Ports 1 and 2 of switch 1 in a fast bond, distributing with an LACP partner."""
    rig = Rig(tmp_path)
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    assert rig.switch.select_groups() == {rig.bond().group_id: (1, 2)}
    return rig


def bond_state(rig: Rig) -> dict[str, Any]:
    """Everything of the bond a garbled frame must leave alone: its runtime and engine,
    each member's every field with ``bad_rx`` zeroed, the service's timers."""
    bond = rig.bond()
    engine = copy.deepcopy(vars(bond.engine))
    for member in engine["members"].values():
        member.counters.bad_rx = 0
    runtime = {k: copy.deepcopy(v) for k, v in vars(bond).items() if k != "engine"}
    return {"engine": engine, "runtime": runtime, "timers": len(rig.service._lacp_timers)}


def bad_counts(rig: Rig) -> dict[int, int]:
    return {port: m.counters.bad_rx for port, m in rig.bond().engine.members.items()}


@FUZZ
@given(frame=any_frames, port=st.one_of(st.integers(1, 4), st.integers(0, 0xFFFFFFFF)))
def test_packet_in_never_raises(negotiated: Rig, frame: bytes, port: int) -> None:
    effects = negotiated.service.packet_in(DPID, port, frame, negotiated.now)
    negotiated.apply(effects)


@FUZZ
@given(frame=lacp_path_frames, port=st.sampled_from([1, 2]))
def test_a_garbled_lacpdu_on_a_member_is_counted_and_changes_nothing_else(negotiated: Rig, frame: bytes, port: int) -> None:
    if decodes(frame):  # a valid LACPDU after all: the engine's to act on (the test above covers it)
        negotiated.apply(negotiated.service.packet_in(DPID, port, frame, negotiated.now))
        return
    before, counts = bond_state(negotiated), bad_counts(negotiated)
    effects = negotiated.service.packet_in(DPID, port, frame, negotiated.now)
    assert not effects.messages and not effects.member_events and not effects.errors
    assert bad_counts(negotiated) == {**counts, port: counts[port] + 1}
    assert bond_state(negotiated) == before


def test_the_negotiated_bond_still_hears_its_partner_after_garbage(negotiated: Rig) -> None:
    """A flood of garbage on both members, then time passes: the bond stays up on both."""
    rng = random.Random(802)
    head = bytes.fromhex("0180c2000002") + bytes(6) + b"\x88\x09"
    for _ in range(200):
        for port in (1, 2):
            frame = head + rng.randbytes(rng.randrange(FRAME_LEN))
            negotiated.apply(negotiated.service.packet_in(DPID, port, frame, negotiated.now))
    assert all(count >= 200 for count in bad_counts(negotiated).values())
    negotiated.run(5.0)
    assert negotiated.switch.select_groups() == {negotiated.bond().group_id: (1, 2)}
    assert negotiated.bond().engine.members[1].partner.system == PARTNER_SYSTEM
