"""BondBfd with a fake clock: two bonds' members on a simulated wire, gating, link changes, reconfiguration."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from ryu_lag.bfd import (
    SILENT_PARTNER_TIME,
    BfdConfig,
    BfdSession,
    BfdUpdate,
    BondBfd,
    ControlPacket,
    Diag,
    Discriminators,
    Encapsulation,
    EncapsulationKind,
    State,
    decode_frame,
    encode_frame,
    is_bfd_frame,
    source_port,
)
from ryu_lag.bfd.packet import MAX_DISCRIMINATOR, MICRO_BFD_DST_MAC, MICRO_BFD_UDP_PORT, OVS_DST_MAC, OVS_UDP_PORT

PORTS = (1, 2)
DELAY = 0.001
OURS, THEIRS = 0, 1


def mac(side: int, port: int) -> str:
    return f"02:00:00:00:0{side}:{port:02x}"


@dataclass
class Wire:
    """Our bond's member N cabled to the partner's member N; the clock jumps from event to event.

    ``cut``: ports whose cable silently drops every frame, both ways (carrier stays up).
    ``deaf``: ports on which the partner no longer sends (it stopped running BFD there).
    """

    ours: BondBfd
    theirs: BondBfd
    now: float = 0.0
    cut: set[int] = field(default_factory=set)
    deaf: set[int] = field(default_factory=set)
    in_flight: list[tuple[float, int, int, bytes]] = field(default_factory=list)  # arrival, to side, port, frame
    gates: list[tuple[float, int, int, bool]] = field(default_factory=list)  # time, side, port, open
    sent: list[tuple[float, int, int, bytes]] = field(default_factory=list)

    def side(self, who: int) -> BondBfd:
        return (self.ours, self.theirs)[who]

    def apply(self, who: int, update: BfdUpdate) -> None:
        self.gates.extend((self.now, who, port, gate) for port, gate in update.gate_changes)
        for port, frame in update.transmit:
            self.sent.append((self.now, who, port, frame))
            if port in self.cut or (who == THEIRS and port in self.deaf):
                continue
            self.in_flight.append((self.now + DELAY, 1 - who, port, frame))

    def link(self, port: int, up: bool) -> None:
        for who in (OURS, THEIRS):
            self.apply(who, self.side(who).set_link(port, up, self.now, mac(who, port)))

    def run(self, until: float) -> None:
        while True:
            nxt = min([self.ours.deadline, self.theirs.deadline, *(t for t, _, _, _ in self.in_flight)])
            if nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            due = [item for item in self.in_flight if item[0] <= self.now]
            self.in_flight = [item for item in self.in_flight if item[0] > self.now]
            for _, to, port, frame in due:
                self.apply(to, self.side(to).receive_frame(port, frame, self.now))
            for who in (OURS, THEIRS):
                self.apply(who, self.side(who).tick(self.now))
                assert self.side(who).deadline > self.now, "a tick left a timer due"

    def gate_changes(self, who: int, since: float = -math.inf) -> list[tuple[float, int, bool]]:
        return [(t, port, gate) for t, side, port, gate in self.gates if side == who and t >= since]


def bond(config: BfdConfig, seed: int, first: int, ports=PORTS) -> BondBfd:
    return BondBfd(config, ports, Discriminators(first), jitter=random.Random(seed).random)


def wired(seed: int = 1, config: BfdConfig | None = None) -> Wire:
    config = config or BfdConfig()
    wire = Wire(bond(config, seed, 1), bond(config, seed + 100, 1000))
    for port in PORTS:
        wire.link(port, True)
    return wire


def up_wire(seed: int = 1) -> Wire:
    wire = wired(seed)
    wire.run(3.0)
    for b in (wire.ours, wire.theirs):
        for port in PORTS:
            assert b.members[port].session.state is State.UP
            assert b.gating(port) and b.gate_open(port)
    return wire


# ---- coming up, a silent cut, mending --------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sessions_come_up_without_gate_changes_and_a_cut_closes_only_that_members_gate(seed):
    wire = up_wire(seed)
    assert wire.gates == []  # open before (not gating) and open once Up
    ours = wire.ours
    assert {p: m.session.local_discriminator for p, m in ours.members.items()} == {1: 1, 2: 2}
    assert {m.session.remote_discriminator for m in ours.members.values()} == {1000, 1001}
    wire.run(13.0)  # 10 s of 100 ms hellos with jitter: no false detection
    assert wire.gates == []
    cut_at = wire.now
    wire.cut.add(1)
    wire.run(cut_at + 1.0)
    for who in (OURS, THEIRS):
        changes = wire.gate_changes(who, cut_at)
        assert [(port, gate) for _, port, gate in changes] == [(1, False)]
        assert changes[0][0] - cut_at <= 0.3 + DELAY  # 3 x 100 ms from the last packet heard
        session = wire.side(who).members[1].session
        assert session.state is not State.UP and session.local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        assert wire.side(who).gating(1) and not wire.side(who).gate_open(1)
        assert wire.side(who).gate_open(2) and wire.side(who).members[2].session.state is State.UP
    assert "out of the bond until BFD is Up again" in ours.reason(1)
    mended_at = wire.now
    wire.cut.clear()
    wire.run(mended_at + 5.0)
    for who in (OURS, THEIRS):
        assert [(port, gate) for _, port, gate in wire.gate_changes(who, mended_at)] == [(1, True)]
        assert wire.side(who).members[1].session.state is State.UP and wire.side(who).gate_open(1)


def test_frames_carry_the_members_mac_discriminator_and_encapsulation():
    wire = wired()
    wire.run(0.5)
    ours = [(port, frame) for _, who, port, frame in wire.sent if who == OURS]
    assert {port for port, _ in ours} == set(PORTS)
    for port, frame in ours:
        decoded = decode_frame(frame, OVS_UDP_PORT)
        discriminator = wire.ours.members[port].session.local_discriminator
        assert decoded.src_mac == mac(OURS, port) and decoded.dst_mac == OVS_DST_MAC
        assert (decoded.src_ip, decoded.dst_ip) == ("169.254.1.1", "169.254.1.0")
        assert decoded.udp_src_port == source_port(discriminator)
        assert decoded.packet.my_discriminator == discriminator


def test_the_first_packet_leaves_when_the_link_comes_up():
    b = bond(BfdConfig(), 1, 1)
    assert b.deadline == math.inf  # every link down: no timer
    update = b.set_link(1, True, 5.0, mac(OURS, 1))
    assert [port for port, _ in update.transmit] == [1]
    assert 5.0 < b.deadline < 6.0  # 1 s while not Up, less jitter
    assert b.tick(b.deadline - 0.001) == BfdUpdate()


# ---- a partner that runs no BFD, or stops ------------------------------------------------------
def test_a_session_that_never_comes_up_does_not_gate():
    ours = bond(BfdConfig(), 1, 1)
    now = 0.0
    sent = 0
    for port in PORTS:
        sent += len(ours.set_link(port, True, now, mac(OURS, port)).transmit)
    while now < 10.0:
        now = ours.deadline
        update = ours.tick(now)
        assert update.gate_changes == []
        sent += len(update.transmit)
    assert 2 * 10 <= sent <= 2 * (10 / 0.75 + 1)  # 1 s hellos while not Up
    for port in PORTS:
        assert ours.gate_open(port) and not ours.gating(port)
        assert ours.reason(port) == (
            "the BFD session never came Up since the link came up: the partner runs no BFD;"
            " the member runs on LACP alone"
        )


def test_partner_admin_down_is_no_failure():
    wire = up_wire()
    at = wire.now
    wire.theirs.members[1].session.set_admin(False, at)
    wire.run(at + 2.0)
    session = wire.ours.members[1].session
    assert session.state is State.DOWN and session.local_diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert wire.gate_changes(OURS, at) == []  # never closed
    assert not wire.ours.gating(1) and wire.ours.gate_open(1)
    assert "partner holds its BFD session AdminDown" in wire.ours.reason(1)
    wire.theirs.members[1].session.set_admin(True, wire.now)  # the partner runs BFD again: gating again once Up
    wire.run(wire.now + 5.0)
    assert session.state is State.UP and wire.ours.gating(1)


def test_a_partner_silent_for_long_leaves_the_member_on_lacp_alone():
    wire = up_wire()
    wire.deaf.add(1)  # the partner stopped running BFD on member 1; our packets still reach it
    at = wire.now
    wire.run(at + 1.0)
    assert [(port, gate) for _, port, gate in wire.gate_changes(OURS, at)] == [(1, False)]
    last_rx = wire.ours.members[1].session.counters.last_rx
    assert wire.ours.deadline <= last_rx + SILENT_PARTNER_TIME
    wire.run(last_rx + SILENT_PARTNER_TIME - 0.01)
    assert not wire.ours.gate_open(1)
    wire.run(last_rx + SILENT_PARTNER_TIME + 0.01)
    changes = wire.gate_changes(OURS, at)
    assert [(port, gate) for _, port, gate in changes] == [(1, False), (1, True)]
    assert changes[1][0] == pytest.approx(last_rx + SILENT_PARTNER_TIME)
    assert not wire.ours.gating(1) and wire.ours.gate_open(1)
    assert wire.ours.reason(1).startswith(f"no BFD packet for {SILENT_PARTNER_TIME:g} s")
    assert wire.ours.gate_open(2) and wire.ours.gating(2)


# ---- link changes -----------------------------------------------------------------------------
def test_link_down_holds_the_session_admin_down_and_link_up_starts_afresh():
    wire = up_wire()
    wire.cut.add(1)
    wire.run(wire.now + 1.0)
    assert not wire.ours.gate_open(1)
    # Link down: the gate opens (LACP has the member out already), no packets, no timers.
    at = wire.now
    update = wire.ours.set_link(1, False, at)
    assert update.gate_changes == [(1, True)] and update.transmit == []
    assert [(p, c.new) for p, c in update.state_changes] == [(1, State.ADMIN_DOWN)]
    member = wire.ours.members[1]
    assert member.session.state is State.ADMIN_DOWN and not wire.ours.gating(1)
    assert wire.ours.reason(1).startswith("link down")
    sent = member.session.counters.tx
    assert wire.ours.receive_frame(1, wire.sent[-1][3], at) == BfdUpdate()  # ignored while down
    wire.run(at + 3.0)
    assert member.session.counters.tx == sent and member.session.state is State.ADMIN_DOWN
    # Link up while the partner no longer runs BFD there: Down, sending within 1 s, not gating.
    wire.deaf.add(1)
    wire.cut.clear()
    update = wire.ours.set_link(1, True, wire.now, mac(OURS, 1))
    assert update.gate_changes == [] and [(p, c.new) for p, c in update.state_changes] == [(1, State.DOWN)]
    assert wire.ours.deadline <= wire.now + 1.0
    assert member.session.state is State.DOWN
    wire.apply(OURS, update)
    wire.run(wire.now + 10.0)
    assert member.session.state is not State.UP
    assert wire.ours.gate_open(1) and not wire.ours.gating(1)
    assert wire.gate_changes(OURS, at + 0.001) == []
    # The partner runs BFD again: Up, and gating again.
    wire.deaf.clear()
    wire.run(wire.now + 5.0)
    assert member.session.state is State.UP and wire.ours.gating(1)


def test_set_link_is_idempotent_and_needs_a_mac():
    wire = up_wire()
    assert wire.ours.set_link(1, True, wire.now, mac(OURS, 1)) == BfdUpdate()
    assert wire.ours.members[1].session.state is State.UP and wire.ours.gating(1)
    fresh = bond(BfdConfig(), 1, 1)
    with pytest.raises(ValueError):
        fresh.set_link(1, True, 0.0)
    assert fresh.set_link(1, False, 0.0) == BfdUpdate()


# ---- bad frames -------------------------------------------------------------------------------
def test_garbled_frames_are_counted_on_their_member_and_never_raise():
    wire = up_wire()
    good = next(frame for _, who, port, frame in reversed(wire.sent) if who == THEIRS and port == 1)
    rng = random.Random(7)
    garbled = [b"", b"\x00" * 10, good[:40], good[:30] + b"\xff" * 36, good[:36] + b"\x0e\xc9" + good[38:]]
    garbled += [
        good[:42] + b"\x40" + good[43:],  # BFD version 2
        good[:44] + b"\x00" + good[45:],  # Detect Mult 0
        good[:46] + bytes(4) + good[50:],  # My Discriminator 0
    ]
    for _ in range(100):  # a flipped bit in the IPv4 header: its checksum no longer adds up
        frame = bytearray(good)
        frame[rng.randrange(14, 34)] ^= 1 << rng.randrange(8)
        garbled.append(bytes(frame))
    ours = wire.ours
    member1, member2 = ours.members[1].session, ours.members[2].session
    for frame in garbled:
        assert ours.receive_frame(1, frame, wire.now) == BfdUpdate()
    assert member1.counters.bad_rx == len(garbled) and member1.counters.last_bad_reason
    assert member2.counters.bad_rx == 0
    assert ours.receive_frame(9, good, wire.now) == BfdUpdate()  # not a member: ignored
    wire.run(wire.now + 2.0)
    assert member1.state is State.UP and wire.gates == []


# ---- reconfiguration -----------------------------------------------------------------------------
def test_reconfigure_keeps_the_sessions_of_remaining_members():
    wire = up_wire()
    ours = wire.ours
    kept = {p: m.session for p, m in ours.members.items()}
    slower = BfdConfig(min_tx_ms=100, min_rx_ms=300, multiplier=3)
    assert ours.reconfigure(slower, [1, 2, 3], wire.now) == BfdUpdate()
    assert ours.ports == (1, 2, 3)
    assert all(ours.members[p].session is s for p, s in kept.items())
    assert kept[1].polling and kept[1].state is State.UP  # through the engine's poll/final
    assert ours.members[3].session.local_discriminator == 3 and not ours.members[3].link_up
    wire.run(wire.now + 2.0)
    assert not kept[1].polling and kept[1].detection_time_us == 900_000  # 3 x max(300 ms, their 100 ms)
    assert wire.gates == []
    ours.reconfigure(slower, [2, 3], wire.now)
    assert ours.ports == (2, 3)
    wire.run(wire.now + 2.0)
    assert kept[2].state is State.UP and wire.gate_changes(OURS) == []


def test_reconfigure_changes_the_encapsulation_of_later_frames():
    wire = up_wire()
    micro = BfdConfig(encapsulation=EncapsulationKind.RFC7130)
    for b in (wire.ours, wire.theirs):
        b.reconfigure(micro, PORTS, wire.now)
    mark = len(wire.sent)
    wire.run(wire.now + 2.0)
    frames = [frame for _, who, _, frame in wire.sent[mark:] if who == OURS]
    assert frames and all(decode_frame(f, MICRO_BFD_UDP_PORT).dst_mac == MICRO_BFD_DST_MAC for f in frames)
    assert all(m.session.state is State.UP for m in wire.ours.members.values()) and wire.gates == []


# ---- against a bare session, as Open vSwitch runs one per interface --------------------------------
def test_a_bare_session_partner_brings_the_member_up_and_a_cut_is_seen():
    ours = bond(BfdConfig(), 1, 1, ports=[5])
    partner = BfdSession(77, 100_000, 100_000, 3, jitter=random.Random(3).random)
    encap = Encapsulation.ovs()
    now, cut = 0.0, False
    inbox: list[bytes] = []
    gates: list[tuple[float, bool]] = []

    def ours_did(update: BfdUpdate) -> None:
        gates.extend((now, gate) for _, gate in update.gate_changes)
        for _, frame in update.transmit:
            if not cut:
                partner_did(partner.receive_frame(frame, OVS_UDP_PORT, now).transmit)

    def partner_did(packets: list[ControlPacket]) -> None:
        if not cut:
            inbox.extend(encode_frame(encap, "02:00:00:00:00:77", source_port(77), p) for p in packets)

    ours_did(ours.set_link(5, True, now, mac(OURS, 5)))
    cut_at = None
    while now < 8.0:
        now = max(now, min(ours.deadline, partner.deadline))  # the partner's first deadline is -inf
        if cut_at is None and now >= 4.0:
            cut, cut_at = True, now
        partner_did(partner.tick(now).transmit)
        while inbox:
            ours_did(ours.receive_frame(5, inbox.pop(0), now))
        ours_did(ours.tick(now))
        session = ours.members[5].session
        if now < 4.0 and session.state is State.UP and session.remote_state is State.UP:
            assert ours.gating(5)  # BFD gates once the session is Up on both sides
    assert cut_at is not None and len(gates) == 1
    at, gate = gates[0]
    assert not gate and at - cut_at <= 0.3 + 1e-9


# ---- helpers ----------------------------------------------------------------------------------------
def test_is_bfd_frame():
    packet = ControlPacket(state=State.DOWN, detect_mult=3, my_discriminator=1, your_discriminator=0,
                           desired_min_tx_us=1_000_000, required_min_rx_us=100_000)
    ovs = encode_frame(Encapsulation.ovs(), mac(0, 1), source_port(1), packet)
    micro = encode_frame(Encapsulation.micro_bfd(), mac(0, 1), source_port(1), packet)
    ovs_config, micro_config = BfdConfig(), BfdConfig(encapsulation=EncapsulationKind.RFC7130)
    assert is_bfd_frame(ovs, ovs_config) and not is_bfd_frame(ovs, micro_config)
    assert is_bfd_frame(micro, micro_config) and not is_bfd_frame(micro, ovs_config)
    tcp = ovs[:23] + b"\x06" + ovs[24:]
    assert not is_bfd_frame(tcp, ovs_config)
    assert not is_bfd_frame(ovs[:40], ovs_config)
    assert not is_bfd_frame(ovs[:12] + b"\x86\xdd" + ovs[14:], ovs_config)
    options = ovs[:14] + b"\x46" + ovs[15:34] + b"\x00" * 4 + ovs[34:]  # IHL 6: the UDP header moves
    assert is_bfd_frame(options, ovs_config) and not is_bfd_frame(ovs[:14] + b"\x46" + ovs[15:], ovs_config)
    slow_protocols = bytes.fromhex("0180c2000002") + bytes(6) + b"\x88\x09" + bytes(110)
    assert not is_bfd_frame(slow_protocols, ovs_config)


def test_discriminators_count_and_wrap():
    d = Discriminators(MAX_DISCRIMINATOR - 1)
    assert [d(), d(), d()] == [MAX_DISCRIMINATOR - 1, MAX_DISCRIMINATOR, 1]
    with pytest.raises(ValueError):
        Discriminators(0)


def test_config_defaults_and_dst_mac_by_encapsulation():
    assert BfdConfig().dst_mac == OVS_DST_MAC and BfdConfig().udp_port == OVS_UDP_PORT
    micro = BfdConfig(encapsulation=EncapsulationKind.RFC7130)
    assert micro.dst_mac == MICRO_BFD_DST_MAC and micro.udp_port == MICRO_BFD_UDP_PORT
    assert BfdConfig(dst_mac=OVS_DST_MAC) == BfdConfig()
    assert BfdConfig().timers_us() == (100_000, 100_000, 3)


# ---- the bond's deadline against every member's timers ------------------------------------------------
def _brute_force_deadline(b: BondBfd) -> float:
    """The earliest timer of any member whose link is up, computed from scratch."""
    return min((min(m.session.deadline, m.disarm_at) for m in b.members.values() if m.link_up), default=math.inf)


def _random_frame(rng: random.Random, b: BondBfd, port: int) -> bytes:
    """A frame from the partner on ``port``: any state, intervals and flags; sometimes not for us, or garbled."""
    member = b.members.get(port)
    ours = member.session.local_discriminator if member is not None else 1
    packet = ControlPacket(
        state=rng.choice([State.ADMIN_DOWN, State.DOWN, State.INIT, State.UP, State.UP, State.UP]),
        diag=rng.choice([Diag.NONE, Diag.CONTROL_DETECTION_TIME_EXPIRED]),
        poll=rng.random() < 0.1,
        final=rng.random() < 0.1,
        detect_mult=rng.choice([1, 3, 5, 255]),  # 255 at 1 s: a detection time past SILENT_PARTNER_TIME
        my_discriminator=5000 + port,
        your_discriminator=rng.choice([ours, ours, ours, 0, 424242]),
        desired_min_tx_us=rng.choice([10_000, 100_000, 1_000_000]),
        required_min_rx_us=rng.choice([0, 1, 100_000, 300_000]),
    )
    frame = encode_frame(Encapsulation.ovs(), mac(THEIRS, port), source_port(5000 + port), packet)
    return frame[:40] if rng.random() < 0.05 else frame


@pytest.mark.parametrize("seed", range(20))
def test_the_deadline_is_never_later_than_any_members_timer_and_a_tick_at_it_moves_on(seed):
    rng = random.Random(seed)
    ports = list(range(1, 9))
    b = bond(BfdConfig(), seed, 1, ports=ports)
    configs = [BfdConfig(), BfdConfig(min_tx_ms=10, min_rx_ms=10, multiplier=1), BfdConfig(min_tx_ms=300, multiplier=5)]
    now = 0.0
    for _ in range(3000):
        roll = rng.random()
        port = rng.choice(ports + [99])  # 99: never a member
        if roll < 0.05 and port in b.members:
            b.set_link(port, not b.members[port].link_up or rng.random() < 0.3, now, mac(OURS, port))
        elif roll < 0.06:
            kept = [p for p in ports if rng.random() < 0.8] or [1]
            b.reconfigure(rng.choice(configs), kept + [p for p in (9, 10) if rng.random() < 0.3], now)
        elif roll < 0.60:
            b.receive_frame(port, _random_frame(rng, b, port), now)
        elif roll < 0.90 and b.deadline != math.inf:
            now = max(now, b.deadline)
        else:
            now += rng.choice([0.001, 0.05, 0.4, 3.0, SILENT_PARTNER_TIME / 2])
        assert b.deadline <= _brute_force_deadline(b), "the deadline is late"
        if now >= b.deadline:
            b.tick(now)
            assert b.deadline > now, "a tick at the deadline left a timer due"
            assert b.deadline <= _brute_force_deadline(b), "the deadline is late after a tick"


def test_a_mended_member_carries_traffic_again_only_once_the_partner_says_up():
    """Our session goes Up on the partner's Init, but Open vSwitch forwards on the member only once its
    own session is Up (on our next packet): the gate waits for the partner's Up."""
    ours = bond(BfdConfig(), 1, 1, ports=[5])
    partner = BfdSession(77, 100_000, 100_000, 3, jitter=random.Random(3).random)
    encap = Encapsulation.ovs()
    now, cut = 0.0, False
    gates: list[bool] = []
    inbox: list[bytes] = []

    def ours_did(update: BfdUpdate) -> None:
        gates.extend(gate for _, gate in update.gate_changes)
        for _, frame in update.transmit:
            if not cut:
                for p in partner.receive_frame(frame, OVS_UDP_PORT, now).transmit:
                    inbox.append(encode_frame(encap, "02:00:00:00:00:77", source_port(77), p))

    ours_did(ours.set_link(5, True, now, mac(OURS, 5)))
    while now < 9.0:
        now = max(now, min(ours.deadline, partner.deadline))
        cut = 3.0 <= now < 5.0
        for p in partner.tick(now).transmit:
            if not cut:
                inbox.append(encode_frame(encap, "02:00:00:00:00:77", source_port(77), p))
        while inbox:
            ours_did(ours.receive_frame(5, inbox.pop(0), now))
            session = ours.members[5].session
            if ours.gating(5):
                assert ours.gate_open(5) == (session.state is State.UP and session.remote_state is State.UP)
        ours_did(ours.tick(now))
    assert gates == [False, True]  # out at the cut, back once both sides are Up
