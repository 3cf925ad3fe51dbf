"""The BFD session with a fake clock: RFC 5880 transitions, timers, jitter, poll/final, a simulated wire."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from ryu_lag.bfd import (
    BfdError,
    BfdSession,
    ControlPacket,
    Diag,
    Encapsulation,
    Event,
    State,
    Update,
    decode_control,
    encode_frame,
    source_port,
)

LOCAL, REMOTE = 0x11, 0x22
MS = 1000  # microseconds per millisecond


def session(tx_ms: int = 100, rx_ms: int = 100, mult: int = 3, jitter=lambda: 0.0) -> BfdSession:
    return BfdSession(LOCAL, tx_ms * MS, rx_ms * MS, mult, jitter=jitter)


def remote(
    state: State,
    your: int | None = None,
    tx_ms: int = 100,
    rx_ms: int = 100,
    mult: int = 3,
    poll: bool = False,
    final: bool = False,
    my: int = REMOTE,
) -> ControlPacket:
    """A packet from the remote; Your Discriminator is ours unless it is Down or AdminDown."""
    if your is None:
        your = 0 if state <= State.DOWN else LOCAL
    return ControlPacket(
        state=state,
        poll=poll,
        final=final,
        detect_mult=mult,
        my_discriminator=my,
        your_discriminator=your,
        desired_min_tx_us=tx_ms * MS,
        required_min_rx_us=rx_ms * MS,
    )


def up_session(now: float = 0.0, **kw) -> BfdSession:
    s = session(**kw)
    s.tick(now)
    s.receive(remote(State.INIT), now)
    assert s.state is State.UP
    return s


# ---- the state machine: every (state, event) pair against RFC 5880 -------------------------
# Written out from RFC 5880 6.8.4, 6.8.6 and 6.8.16, not derived from the module's table.
# None: the state stays as it is.
RA, RD, RI, RU = Event.REMOTE_ADMIN_DOWN, Event.REMOTE_DOWN, Event.REMOTE_INIT, Event.REMOTE_UP
EXP, ADOWN, AUP = Event.DETECTION_TIME_EXPIRED, Event.ADMIN_DOWN, Event.ADMIN_UP
NEIGHBOR = Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
EXPIRED = Diag.CONTROL_DETECTION_TIME_EXPIRED
ADMIN = Diag.ADMINISTRATIVELY_DOWN
RFC_5880: dict[tuple[State, Event], tuple[State, Diag] | None] = {
    (State.DOWN, RA): None,
    (State.DOWN, RD): (State.INIT, Diag.NONE),
    (State.DOWN, RI): (State.UP, Diag.NONE),
    (State.DOWN, RU): None,
    (State.DOWN, EXP): None,
    (State.DOWN, ADOWN): (State.ADMIN_DOWN, ADMIN),
    (State.DOWN, AUP): None,
    (State.INIT, RA): (State.DOWN, NEIGHBOR),
    (State.INIT, RD): None,
    (State.INIT, RI): (State.UP, Diag.NONE),
    (State.INIT, RU): (State.UP, Diag.NONE),
    (State.INIT, EXP): (State.DOWN, EXPIRED),
    (State.INIT, ADOWN): (State.ADMIN_DOWN, ADMIN),
    (State.INIT, AUP): None,
    (State.UP, RA): (State.DOWN, NEIGHBOR),
    (State.UP, RD): (State.DOWN, NEIGHBOR),
    (State.UP, RI): None,
    (State.UP, RU): None,
    (State.UP, EXP): (State.DOWN, EXPIRED),
    (State.UP, ADOWN): (State.ADMIN_DOWN, ADMIN),
    (State.UP, AUP): None,
    (State.ADMIN_DOWN, RA): None,
    (State.ADMIN_DOWN, RD): None,
    (State.ADMIN_DOWN, RI): None,
    (State.ADMIN_DOWN, RU): None,
    (State.ADMIN_DOWN, EXP): None,
    (State.ADMIN_DOWN, ADOWN): None,
    (State.ADMIN_DOWN, AUP): (State.DOWN, Diag.NONE),
}


def test_the_rfc_table_covers_every_pair():
    assert set(RFC_5880) == set(itertools.product(State, Event))


def in_state(state: State) -> BfdSession:
    """A session in ``state`` that has accepted one packet at t=0 (its detection timer runs unless AdminDown)."""
    s = session()
    s.tick(0.0)
    first = {State.DOWN: State.ADMIN_DOWN, State.INIT: State.DOWN}.get(state, State.INIT)
    s.receive(remote(first), 0.0)
    if state is State.ADMIN_DOWN:
        s.set_admin(False, 0.0)
    assert s.state is state
    return s


def apply(s: BfdSession, event: Event, now: float):
    if event in (RA, RD, RI, RU):
        remote_state = {RA: State.ADMIN_DOWN, RD: State.DOWN, RI: State.INIT, RU: State.UP}[event]
        return s.receive(remote(remote_state), now)
    if event is EXP:
        return s.tick(now + 10.0)  # far beyond any detection time (3 x 1 s at most here)
    return s.set_admin(event is AUP, now)


@pytest.mark.parametrize("state, event", sorted(RFC_5880, key=lambda k: (k[0], k[1].name)))
def test_transition(state, event):
    s = in_state(state)
    diag_before, changes_before = s.local_diag, s.counters.state_changes
    update = apply(s, event, 0.05)
    expected = RFC_5880[(state, event)]
    if expected is None:
        assert s.state is state
        assert s.local_diag is diag_before
        assert update.state_change is None
        assert s.counters.state_changes == changes_before
    else:
        new, diag = expected
        assert (s.state, s.local_diag) == (new, diag)
        change = update.state_change
        assert change is not None
        assert (change.old, change.new, change.diag, change.reason) == (state, new, diag, event.value)
        assert s.counters.last_change == change
        assert s.counters.state_changes == changes_before + 1


def test_admin_down_records_the_remote_but_changes_nothing_else():
    s = up_session()
    s.set_admin(False, 0.1)
    update = s.receive(remote(State.UP, tx_ms=50, poll=True, my=0x99), 0.2)
    assert update.transmit == [] and update.state_change is None  # no Final while AdminDown
    assert s.state is State.ADMIN_DOWN
    assert s.remote_discriminator == 0x99 and s.remote_desired_min_tx_us == 50 * MS
    assert s.deadline < math.inf and s.tick(100.0).state_change is None  # no detection while AdminDown
    packets = [p for t in range(101, 106) for p in s.tick(float(t)).transmit]
    assert packets and all(p.state is State.ADMIN_DOWN and p.diag is Diag.ADMINISTRATIVELY_DOWN for p in packets)
    assert all(p.desired_min_tx_us == 1_000_000 for p in packets)
    assert s.set_admin(True, 106.0).state_change.new is State.DOWN
    assert s.local_diag is Diag.NONE


def test_wrong_your_discriminator_is_counted_and_ignored():
    s = up_session()
    before = s.deadline
    update = s.receive(remote(State.DOWN, your=LOCAL + 1), 0.05)
    assert update.transmit == [] and update.state_change is None
    assert s.state is State.UP and s.counters.rx == 1 and s.counters.bad_rx == 1
    assert "not ours" in s.counters.last_bad_reason
    assert s.deadline == before
    s.bad_packet("TTL 64, not 255")  # what the caller does with a BfdError
    assert s.counters.bad_rx == 2 and s.counters.last_bad_reason == "TTL 64, not 255"


def test_receive_frame_decodes_and_counts_bad_frames():
    s = session()
    encapsulation = Encapsulation.ovs()
    down = encode_frame(encapsulation, "02:00:00:00:00:bb", 49152, remote(State.DOWN, tx_ms=1000))
    assert s.receive_frame(down, 3784, 0.0).state_change.new is State.INIT
    assert s.receive_frame(down, 3784, 0.1).state_change is None  # the same frame again
    assert s.counters.rx == 2 and s.counters.last_rx == 0.1
    up = encode_frame(encapsulation, "02:00:00:00:00:bb", 49152, remote(State.UP, tx_ms=1000))
    assert s.receive_frame(up, 3784, 0.2).state_change.new is State.UP
    assert s.receive_frame(up, 6784, 0.3) == Update()  # the frame decoded a moment ago, to the wrong port
    assert s.counters.bad_rx == 1 and "UDP destination port 3784" in s.counters.last_bad_reason
    assert s.receive_frame(up[:50], 3784, 0.3) == Update()
    assert s.counters.bad_rx == 2 and "total length 52 exceeds" in s.counters.last_bad_reason
    assert s.state is State.UP and s.counters.rx == 3


def test_remote_discriminator_learned_and_echoed():
    s = session()
    assert s.tick(0.0).transmit[0].your_discriminator == 0
    s.receive(remote(State.DOWN, my=0xABCDEF, tx_ms=1000), 0.1)
    assert s.remote_discriminator == 0xABCDEF and s.state is State.INIT
    packet = s.tick(s.deadline).transmit[0]
    assert (packet.state, packet.my_discriminator, packet.your_discriminator) == (State.INIT, LOCAL, 0xABCDEF)


def test_detection_expiry_while_down_forgets_the_remote():
    s = session()
    s.tick(0.0)
    s.receive(remote(State.ADMIN_DOWN, tx_ms=1000), 0.0)  # mult 3 x 1 s: detection time 3 s
    assert s.state is State.DOWN and s.remote_discriminator == REMOTE
    assert s.tick(2.9).transmit and s.remote_discriminator == REMOTE
    s.tick(3.0)
    assert s.state is State.DOWN and s.remote_discriminator == 0 and s.remote_min_rx_us == 1
    assert s.counters.state_changes == 0


def test_ever_up_and_forwarding():
    s = session()
    assert s.forwarding and not s.ever_up  # never Up: the partner may run no BFD, do not gate
    s.receive(remote(State.DOWN), 0.0)
    assert s.state is State.INIT and s.forwarding
    s.receive(remote(State.UP), 0.1)
    assert s.ever_up and s.forwarding
    s.receive(remote(State.DOWN), 0.2)
    assert s.state is State.DOWN and s.ever_up and not s.forwarding
    assert s.counters.last_down.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    s.set_admin(False, 0.3)
    assert s.forwarding  # held AdminDown by us: not a path failure


def test_constructor_and_reconfigure_validate():
    bad_arguments = (
        (0, 100, 100, 3),
        (1, 0, 100, 3),
        (1, 100, 0, 3),
        (1, 100, 100, 0),
        (1, 100, 100, 256),
        (2**32, 1, 1, 1),
    )
    for bad in bad_arguments:
        with pytest.raises(ValueError):
            BfdSession(*bad)
    s = session()
    with pytest.raises(ValueError):
        s.reconfigure(100 * MS, 100 * MS, 0, 0.0)
    assert s.timers.detect_mult == 3


# ---- timers ------------------------------------------------------------------------------
def test_first_tick_sends_and_deadline():
    s = session()
    assert s.deadline == -math.inf
    first = s.tick(5.0).transmit
    assert len(first) == 1 and s.counters.tx == 1 and s.counters.last_tx == 5.0
    assert s.deadline == pytest.approx(6.0)  # 1 s while not Up, no jitter drawn (jitter source 0)
    assert s.tick(5.999).transmit == []
    assert len(s.tick(6.0).transmit) == 1


def test_slow_while_not_up_then_configured_interval():
    """RFC 5880 6.8.3: at least 1 s advertised and used while not Up; the configured 100 ms once Up."""
    s = session(tx_ms=100)
    packet = s.tick(0.0).transmit[0]
    assert (packet.state, packet.desired_min_tx_us, packet.required_min_rx_us) == (State.DOWN, 1_000_000, 100 * MS)
    assert s.tx_interval_us == 1_000_000
    s.receive(remote(State.INIT), 0.5)
    assert s.state is State.UP
    assert s.tx_interval_us == 100 * MS and s.advertised_min_tx_us == 100 * MS
    assert s.deadline == pytest.approx(0.1)  # the pending packet moved to last TX + 100 ms
    packet = s.tick(0.5).transmit[0]
    assert packet.desired_min_tx_us == 100 * MS and packet.poll  # the change goes through a poll


def test_agreed_intervals_and_detection_time():
    s = up_session(tx_ms=100, rx_ms=100)
    s.receive(remote(State.UP, tx_ms=250, rx_ms=300, mult=5), 1.0)
    assert s.tx_interval_us == 300 * MS  # max(our 100 ms, their required 300 ms)
    assert s.rx_interval_us == 250 * MS  # max(our required 100 ms, their desired 250 ms)
    assert s.detection_time_us == 5 * 250 * MS  # their multiplier
    assert s.detection_expires_at == pytest.approx(1.0 + 1.25)
    s.receive(remote(State.UP, tx_ms=20, rx_ms=10, mult=2), 2.0)
    assert (s.tx_interval_us, s.rx_interval_us, s.detection_time_us) == (100 * MS, 100 * MS, 200 * MS)


def test_no_detection_time_before_hearing_the_remote():
    s = session()
    assert s.detection_time_us is None
    s.tick(0.0)
    assert s.deadline == pytest.approx(1.0)  # only the transmit timer runs


def test_detection_after_three_missed_packets_at_100ms():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    t = 0.0
    for _ in range(20):  # the remote sends every 100 ms; we stay Up
        t = round(t + 0.1, 6)
        s.tick(t)
        s.receive(remote(State.UP), t)
        assert s.state is State.UP
    last_rx = t
    down_at = None
    while down_at is None:
        now = s.deadline
        update = s.tick(now)
        if update.state_change:
            down_at = now
    assert down_at - last_rx == pytest.approx(0.3)
    assert s.state is State.DOWN and s.local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert s.remote_discriminator == 0


def test_the_packet_after_expiry_says_down_on_the_old_schedule():
    """Going Down does not push the pending packet out by the 1 s rate: the remote hears Down in time."""
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.receive(remote(State.UP), 0.05)  # the last packet heard
    for t in (0.1, 0.2, 0.3):
        assert s.tick(t).transmit[0].state is State.UP
    assert s.next_periodic_at == pytest.approx(0.4)
    update = s.tick(0.35)  # 0.05 + 300 ms
    assert update.state_change.new is State.DOWN and update.transmit == []
    assert s.next_periodic_at == pytest.approx(0.4)  # not last TX + 1 s, the rate while Down
    packet = s.tick(0.4).transmit[0]
    assert packet.state is State.DOWN and packet.your_discriminator == 0
    assert packet.desired_min_tx_us == 1_000_000
    assert s.next_periodic_at == pytest.approx(1.4)  # from here on, the slow rate


def test_late_tick_times_the_next_gap_from_now():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.tick(0.1)
    s.receive(remote(State.UP), 0.2)
    s.tick(0.35)  # 150 ms late
    assert s.next_periodic_at == pytest.approx(0.45)


@pytest.mark.parametrize("mult, low, high", [(3, 0.75, 1.0), (1, 0.75, 0.90)])
def test_jitter_bounds(mult, low, high):
    """RFC 5880 6.8.7: gaps are 75-100 % of the interval, 75-90 % with Detect Mult 1."""
    for draw, factor in ((0.0, high), (1.0 - 1e-12, low)):
        s = up_session(mult=mult, jitter=lambda draw=draw: draw)
        s.receive(remote(State.UP, final=True), 0.0)
        s.tick(0.1)
        assert s.next_periodic_at - 0.1 == pytest.approx(0.1 * factor)
    rng = random.Random(7130)
    s = up_session(mult=mult, jitter=rng.random)
    t, gaps = 0.0, []
    s.receive(remote(State.UP, final=True), t)
    for _ in range(2000):
        s.receive(remote(State.UP), t)  # keep it Up
        nxt = s.next_periodic_at
        s.tick(nxt)
        if t:
            gaps.append(nxt - t)
        t = nxt
    ratios = [g / 0.1 for g in gaps]
    assert all(low - 1e-9 <= r <= high + 1e-9 for r in ratios)
    assert min(ratios) < low + 0.01 and max(ratios) > high - 0.01  # the whole range is used
    assert 0.1 * (low + high) / 2 == pytest.approx(sum(gaps) / len(gaps), rel=0.02)


def test_remote_required_min_rx_zero_stops_periodic_packets():
    s = up_session()
    s.receive(remote(State.UP, rx_ms=0, final=True), 0.0)
    assert s.deadline == pytest.approx(0.3)  # only detection
    assert s.tick(0.25).transmit == []
    update = s.receive(remote(State.UP, rx_ms=0, poll=True), 0.25)
    assert [p.final for p in update.transmit] == [True]  # a poll is still answered
    s.receive(remote(State.UP, rx_ms=100), 0.3)
    assert s.deadline <= 0.3 + 0.1


def test_remote_slowing_down_moves_the_pending_packet():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.tick(0.1)
    assert s.next_periodic_at == pytest.approx(0.2)
    s.receive(remote(State.UP, rx_ms=500), 0.15)
    assert s.next_periodic_at == pytest.approx(0.6)  # honour the remote's larger Required Min RX at once


# ---- poll / final ----------------------------------------------------------------------------
def test_received_poll_is_answered_at_once_without_moving_the_schedule():
    s = up_session()
    s.tick(0.0)
    before = s.next_periodic_at
    update = s.receive(remote(State.UP, poll=True), 0.01)
    assert len(update.transmit) == 1
    answer = update.transmit[0]
    assert answer.final and not answer.poll and answer.state is State.UP
    assert s.next_periodic_at == before


def test_answer_while_polling_carries_final_only():
    s = up_session()
    assert s.polling  # going Up with 100 ms polls
    answer = s.receive(remote(State.UP, poll=True), 0.01).transmit[0]
    assert answer.final and not answer.poll
    assert s.tick(s.next_periodic_at).transmit[0].poll


def test_going_up_polls_until_final():
    s = up_session()
    assert s.polling
    for t in (0.1, 0.2, 0.3):
        s.receive(remote(State.UP), t - 0.05)
        assert s.tick(t).transmit[0].poll
    s.receive(remote(State.UP, final=True), 0.35)
    assert not s.polling
    assert not s.tick(0.4).transmit[0].poll


def test_slower_tx_applies_only_after_final():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.tick(0.0)
    s.reconfigure(300 * MS, 100 * MS, 3, 0.01)
    assert s.polling and s.advertised_min_tx_us == 300 * MS
    assert s.tx_interval_us == 100 * MS  # 6.8.3: not before the poll ends
    packet = s.tick(0.1).transmit[0]
    assert packet.poll and packet.desired_min_tx_us == 300 * MS
    assert s.next_periodic_at == pytest.approx(0.2)
    s.receive(remote(State.UP, final=True), 0.15)
    assert not s.polling and s.tx_interval_us == 300 * MS
    assert s.next_periodic_at == pytest.approx(0.2)  # the pending packet keeps its time; gaps grow after it
    s.tick(0.2)
    assert s.next_periodic_at == pytest.approx(0.5)


def test_faster_tx_applies_at_once_but_still_polls():
    s = up_session(tx_ms=300)
    s.receive(remote(State.UP, final=True), 0.0)
    s.tick(0.0)
    assert s.tx_interval_us == 300 * MS and s.next_periodic_at == pytest.approx(0.3)
    s.reconfigure(100 * MS, 100 * MS, 3, 0.01)
    assert s.polling and s.tx_interval_us == 100 * MS
    assert s.next_periodic_at == pytest.approx(0.1)


def test_smaller_required_rx_applies_to_detection_only_after_final():
    s = up_session(rx_ms=300)
    s.receive(remote(State.UP, final=True), 0.0)
    assert s.detection_time_us == 900 * MS
    s.reconfigure(100 * MS, 100 * MS, 3, 0.01)
    assert s.polling and s.advertised_min_rx_us == 100 * MS
    assert s.detection_time_us == 900 * MS and s.deadline <= 0.9
    s.receive(remote(State.UP, final=True), 0.05)
    assert s.detection_time_us == 300 * MS
    assert s.detection_expires_at == pytest.approx(0.35)


def test_larger_required_rx_applies_at_once_and_rearms_detection():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.reconfigure(100 * MS, 500 * MS, 3, 0.01)
    assert s.polling and s.detection_time_us == 1500 * MS
    assert s.detection_expires_at == pytest.approx(1.5)


def test_change_during_poll_waits_then_polls_again():
    s = up_session()
    assert s.polling and s.advertised_min_tx_us == 100 * MS
    s.reconfigure(200 * MS, 100 * MS, 3, 0.01)
    assert s.advertised_min_tx_us == 100 * MS  # the poll in flight asks about 100 ms
    s.receive(remote(State.UP, final=True), 0.02)
    assert s.polling and s.advertised_min_tx_us == 200 * MS and s.tx_interval_us == 100 * MS
    s.receive(remote(State.UP, final=True), 0.03)
    assert not s.polling and s.tx_interval_us == 200 * MS


def test_final_without_poll_is_harmless_and_leaving_up_ends_the_poll():
    s = up_session()
    s.receive(remote(State.UP, final=True), 0.0)
    s.receive(remote(State.UP, final=True), 0.01)
    assert not s.polling and s.tx_interval_us == 100 * MS
    s.reconfigure(400 * MS, 100 * MS, 3, 0.02)
    assert s.polling
    s.receive(remote(State.DOWN), 0.03)
    assert not s.polling and s.advertised_min_tx_us == 1_000_000 and s.tx_interval_us == 1_000_000


def test_reconfigure_while_down_applies_at_once():
    s = session()
    s.reconfigure(2_000 * MS, 50 * MS, 5, 0.0)
    assert not s.polling
    assert (s.advertised_min_tx_us, s.advertised_min_rx_us, s.tx_interval_us) == (2_000_000, 50 * MS, 2_000_000)
    assert s.tick(0.0).transmit[0].detect_mult == 5


# ---- two sessions on a simulated wire ------------------------------------------------------
@dataclass
class Wire:
    """Two sessions joined by a link with a fixed delay; frames go through the codec both ways.

    The clock jumps from one event (a deadline or an arrival) to the next.
    """

    a: BfdSession
    b: BfdSession
    delay: float = 0.001
    now: float = 0.0
    cut: bool = False
    in_flight: list[tuple[float, int, bytes]] = field(default_factory=list)  # arrival, to (0: a, 1: b), frame
    changes: list[tuple[float, str, State]] = field(default_factory=list)

    def sessions(self) -> tuple[BfdSession, BfdSession]:
        return self.a, self.b

    def _send(self, sender: int, packets: list[ControlPacket]) -> None:
        s = self.sessions()[sender]
        mac, port = f"02:00:00:00:00:0{sender}", source_port(s.local_discriminator)
        for packet in packets:
            frame = encode_frame(Encapsulation.ovs(), mac, port, packet)
            if not self.cut:
                self.in_flight.append((self.now + self.delay, 1 - sender, frame))

    def apply(self, who: int, update: Update) -> None:
        """Record a state change of session ``who`` (0: a, 1: b) and put what it sends on the wire."""
        if update.state_change:
            self.changes.append((self.now, "ab"[who], update.state_change.new))
        self._send(who, update.transmit)

    def run(self, until: float) -> None:
        while True:
            arrivals = [t for t, _, _ in self.in_flight]
            nxt = min([self.a.deadline, self.b.deadline, *arrivals])
            if nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            due = [item for item in self.in_flight if item[0] <= self.now]
            self.in_flight = [item for item in self.in_flight if item[0] > self.now]
            for _, to, frame in due:
                self.apply(to, self.sessions()[to].receive_frame(frame, 3784, self.now))
            for who, s in enumerate(self.sessions()):
                self.apply(who, s.tick(self.now))


def pair(seed: int = 1) -> Wire:
    rng = random.Random(seed)
    return Wire(BfdSession(1, 100 * MS, 100 * MS, 3, rng.random), BfdSession(2, 100 * MS, 100 * MS, 3, rng.random))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_sessions_come_up_agree_and_detect_a_cut(seed):
    wire = pair(seed)
    wire.run(3.0)
    a, b = wire.sessions()
    assert a.state is State.UP and b.state is State.UP
    assert (a.remote_discriminator, b.remote_discriminator) == (2, 1)
    assert not a.polling and not b.polling
    assert a.tx_interval_us == b.tx_interval_us == 100 * MS
    assert a.detection_time_us == b.detection_time_us == 300 * MS
    assert a.counters.bad_rx == b.counters.bad_rx == 0
    # Up for 10 s of 100 ms hellos with jitter: never a false detection.
    sent_before = a.counters.tx
    wire.run(13.0)
    assert a.state is State.UP and b.state is State.UP
    assert 100 <= a.counters.tx - sent_before <= 10 / 0.075 + 1
    # A silent cut: both detect it within the detection time of the last packet heard.
    wire.cut, cut_at = True, wire.now
    last_rx = {"a": a.counters.last_rx, "b": b.counters.last_rx}
    wire.run(cut_at + 1.0)
    downs = {who: t for t, who, state in wire.changes if state is State.DOWN and t > cut_at}
    assert set(downs) == {"a", "b"}
    for who, t in downs.items():
        assert t - last_rx[who] == pytest.approx(0.3)
        assert t - cut_at <= 0.3 + wire.delay
    assert a.local_diag is b.local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert not a.forwarding and not b.forwarding
    # Mended: back Up, at the slow rate's pace (a few seconds at most).
    wire.cut = False
    mended_at = wire.now
    wire.run(mended_at + 5.0)
    assert a.state is State.UP and b.state is State.UP and a.forwarding and b.forwarding
    ups = [t for t, _, state in wire.changes if state is State.UP and t > mended_at]
    assert ups and max(ups) - mended_at < 3.5


def test_one_side_admin_down_takes_the_other_down_with_neighbor_signaled():
    wire = pair()
    wire.run(3.0)
    a, b = wire.sessions()
    wire.apply(0, a.set_admin(False, wire.now))
    wire.run(wire.now + 2.0)
    assert a.state is State.ADMIN_DOWN
    assert b.state is State.DOWN and b.local_diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    wire.apply(0, a.set_admin(True, wire.now))
    wire.run(wire.now + 5.0)
    assert a.state is State.UP and b.state is State.UP


def test_garbage_decoded_packets_never_break_a_session():
    """Anything the codec accepts, in any order, leaves the session consistent and raising nothing."""
    rng = random.Random(5)
    s = BfdSession(LOCAL, 100 * MS, 100 * MS, 3, rng.random)
    now = 0.0
    for _ in range(5000):
        now += rng.random() * 0.2
        raw = (
            bytes([0x20 | rng.randrange(32), rng.randrange(256) & ~0x05, rng.randrange(1, 256), 24])
            + rng.choice([LOCAL, 0, rng.randrange(1, 2**32)]).to_bytes(4, "big")
            + rng.choice([LOCAL, 0, rng.randrange(2**32)]).to_bytes(4, "big")
            + b"".join(rng.choice([0, 1, 100_000, rng.randrange(2**32)]).to_bytes(4, "big") for _ in range(3))
        )
        try:
            packet = decode_control(raw)
        except BfdError:
            s.bad_packet("garbage")
            continue
        s.receive(packet, now)
        s.tick(now)
        assert s.deadline >= now or s.deadline == -math.inf
        assert s.state in State
