"""One BFD session per bond member: RFC 5880 asynchronous mode, driven with an explicit clock.

Rules this module keeps:
- State changes are the rows of :data:`TRANSITIONS` (RFC 5880 6.8.6 for the state a
  received packet carries, 6.8.4 for the detection time, 6.8.16 for administrative
  control); an event without a row leaves the state as it is.
- A packet is accepted only if its Your Discriminator is ours or 0 (6.8.6: it names the
  session); others are counted as bad. Every accepted packet records the remote's
  discriminator, state, diagnostic, intervals and Detect Mult, even while we are
  AdminDown, where it changes nothing else (no state change, no detection, no Final).
- While not Up we advertise a Desired Min TX of at least 1 s (6.8.3), whatever is
  configured; the configured value applies once Up.
- TX interval = max(our Desired Min TX in use, the remote's Required Min RX); no periodic
  packets while the remote's Required Min RX is 0. Detection time = the remote's Detect
  Mult x max(our Required Min RX in use, the remote's Desired Min TX), counted from the
  last accepted packet. When it passes, the remote discriminator returns to 0, the
  remote's Required Min RX to 1 us (6.8.18), and Init or Up goes Down with diagnostic 1.
- Our interval changes while Up (a reconfiguration, or going Up with a Desired Min TX
  below 1 s) go through a Poll sequence (6.5, 6.8.3): periodic packets carry P until a
  packet with F arrives. A smaller Desired Min TX or a larger Required Min RX applies at
  once; a larger Desired Min TX or a smaller Required Min RX only when the F arrives. A
  change made during a poll waits for it to end, then starts its own. Leaving Up ends any
  poll: the values apply at once.
- A received Poll is answered at once with a packet carrying F (and never P with it); the
  answer does not move the periodic schedule.
- Periodic packets are jittered (6.8.7): each gap is 75-100 % of the TX interval,
  75-90 % when our Detect Mult is 1, drawn from the random source the caller gives. A gap
  runs from the packet sent. When the TX interval changes, the pending packet moves to
  the last periodic packet plus a new gap if the remote's Required Min RX changed or our
  interval shrank; when our own interval grows (leaving Up), the pending packet keeps its
  time, so the remote hears of the change on the schedule it expects.
- We send with C clear (our BFD shares fate with the controller), never set Demand, and
  advertise Required Min Echo RX 0. Not implemented: authentication (such packets are
  discarded by the codec), the Echo function, Demand mode (a remote's Demand bit is
  recorded; we keep transmitting periodically).

Nothing here reads a clock or does I/O: every event takes ``now`` (seconds) and returns
an :class:`Update` of the packets to send and the state change, if any. Bad input is
counted (``counters.bad_rx``, ``counters.last_bad_reason``), never raised.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from typing import Callable

from ryu_lag.bfd.packet import (
    MAX_DETECT_MULT,
    MAX_DISCRIMINATOR,
    MAX_INTERVAL_US,
    BfdError,
    ControlPacket,
    Diag,
    State,
    decode_frame,
)

SLOW_TX_US = 1_000_000  # RFC 5880 6.8.3: the least Desired Min TX advertised while not Up
INITIAL_REMOTE_MIN_RX_US = 1  # RFC 5880 6.8.1: bfd.RemoteMinRxInterval before hearing the remote
US = 1e-6  # seconds per microsecond


class Event(enum.Enum):
    """What can change a session's state; the value is the reason in words."""

    REMOTE_ADMIN_DOWN = "remote state AdminDown"
    REMOTE_DOWN = "remote state Down"
    REMOTE_INIT = "remote state Init"
    REMOTE_UP = "remote state Up"
    DETECTION_TIME_EXPIRED = "detection time expired"
    ADMIN_DOWN = "administratively disabled"
    ADMIN_UP = "administratively enabled"


_EVENT_BY_REMOTE_STATE = {
    State.ADMIN_DOWN: Event.REMOTE_ADMIN_DOWN,
    State.DOWN: Event.REMOTE_DOWN,
    State.INIT: Event.REMOTE_INIT,
    State.UP: Event.REMOTE_UP,
}

# (state, event) -> (new state, our diagnostic). No row: the state stays.
TRANSITIONS: dict[tuple[State, Event], tuple[State, Diag]] = {
    # RFC 5880 6.8.6: the state in a received packet (ignored while AdminDown)
    (State.DOWN, Event.REMOTE_DOWN): (State.INIT, Diag.NONE),
    (State.DOWN, Event.REMOTE_INIT): (State.UP, Diag.NONE),
    (State.INIT, Event.REMOTE_ADMIN_DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (State.INIT, Event.REMOTE_INIT): (State.UP, Diag.NONE),
    (State.INIT, Event.REMOTE_UP): (State.UP, Diag.NONE),
    (State.UP, Event.REMOTE_ADMIN_DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (State.UP, Event.REMOTE_DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
    # RFC 5880 6.8.4: no packet for a detection time
    (State.INIT, Event.DETECTION_TIME_EXPIRED): (State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED),
    (State.UP, Event.DETECTION_TIME_EXPIRED): (State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED),
    # RFC 5880 6.8.16: administrative control
    (State.DOWN, Event.ADMIN_DOWN): (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN),
    (State.INIT, Event.ADMIN_DOWN): (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN),
    (State.UP, Event.ADMIN_DOWN): (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN),
    (State.ADMIN_DOWN, Event.ADMIN_UP): (State.DOWN, Diag.NONE),
}


@dataclass(frozen=True)
class Timers:
    """Our configured intervals (microseconds) and Detect Mult; out-of-range values raise ValueError."""

    desired_min_tx_us: int
    required_min_rx_us: int
    detect_mult: int

    def __post_init__(self) -> None:
        for name in ("desired_min_tx_us", "required_min_rx_us"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_INTERVAL_US:
                raise ValueError(f"{name} {value} is outside 1-{MAX_INTERVAL_US}")
        if not 1 <= self.detect_mult <= MAX_DETECT_MULT:
            raise ValueError(f"detect_mult {self.detect_mult} is outside 1-{MAX_DETECT_MULT}")


@dataclass(frozen=True)
class StateChange:
    """The session went from ``old`` to ``new`` at ``at``, with our diagnostic ``diag``."""

    old: State
    new: State
    diag: Diag
    reason: str
    at: float


@dataclass
class Update:
    """What the caller must do after an event: send ``transmit``; note ``state_change``."""

    transmit: list[ControlPacket] = field(default_factory=list)
    state_change: StateChange | None = None


@dataclass
class Counters:
    """Per-session counters; ``rx`` counts accepted packets, ``bad_rx`` the rest."""

    rx: int = 0
    tx: int = 0
    bad_rx: int = 0
    state_changes: int = 0
    last_rx: float | None = None
    last_tx: float | None = None
    last_bad_reason: str | None = None
    last_change: StateChange | None = None
    last_down: StateChange | None = None  # the latest change to Down or AdminDown


class BfdSession:
    """The RFC 5880 asynchronous-mode session of one member.

    ``jitter`` returns a float in [0, 1) per periodic packet (``random.random`` unless a
    test injects another). A timer that is not running is ``math.inf``.
    """

    def __init__(
        self,
        local_discriminator: int,
        desired_min_tx_us: int,
        required_min_rx_us: int,
        detect_mult: int,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not 1 <= local_discriminator <= MAX_DISCRIMINATOR:
            raise ValueError(f"local discriminator {local_discriminator} is outside 1-{MAX_DISCRIMINATOR}")
        self.local_discriminator = local_discriminator
        self.timers = Timers(desired_min_tx_us, required_min_rx_us, detect_mult)
        self._jitter = jitter
        self.state = State.DOWN
        self.local_diag = Diag.NONE
        self.ever_up = False
        self.remote_discriminator = 0
        self.remote_state = State.DOWN
        self.remote_diag: int = Diag.NONE
        self.remote_demand = False
        self.remote_min_rx_us = INITIAL_REMOTE_MIN_RX_US
        self.remote_desired_min_tx_us = 0
        self.remote_detect_mult: int | None = None  # None until a packet is accepted
        self.polling = False
        self.counters = Counters()
        # What our packets carry, and what our own timing uses (they differ only during a poll).
        self._advertised: tuple[int, int] = self._target()  # Desired Min TX, Required Min RX
        self._in_use: tuple[int, int] = self._advertised
        # The last well-formed frame received and its packet: a remote repeats the same frame until
        # something changes, so most frames need no decoding.
        self._last_frame: tuple[bytes, int, ControlPacket] | None = None
        self._last_periodic: float | None = None
        self._gap_interval_us = self.tx_interval_us  # the TX interval the pending packet was timed with
        self._next_tx = -math.inf  # the first tick sends
        self._detect_at = math.inf

    # ---- views -----------------------------------------------------------
    @property
    def deadline(self) -> float:
        """No timer fires before this (``-inf`` before the first tick, ``inf`` if none runs)."""
        return min(self._next_tx, self._detect_at)

    @property
    def next_periodic_at(self) -> float:
        """When the next periodic packet is due (``inf`` while the remote wants none)."""
        return self._next_tx

    @property
    def detection_expires_at(self) -> float:
        """When the detection time runs out (``inf`` while it does not run)."""
        return self._detect_at

    @property
    def is_up(self) -> bool:
        return self.state is State.UP

    @property
    def forwarding(self) -> bool:
        """BFD lets the member carry traffic.

        True while Up; also while the session has never been Up (the partner may run no
        BFD: the member runs on LACP alone) and while we hold it AdminDown (a decision of
        ours, not a failure of the path).
        """
        return self.state is State.UP or not self.ever_up or self.state is State.ADMIN_DOWN

    @property
    def advertised_min_tx_us(self) -> int:
        """The Desired Min TX our packets carry."""
        return self._advertised[0]

    @property
    def advertised_min_rx_us(self) -> int:
        """The Required Min RX our packets carry."""
        return self._advertised[1]

    @property
    def tx_interval_us(self) -> int:
        """The agreed TX interval: max(our Desired Min TX in use, the remote's Required Min RX)."""
        return max(self._in_use[0], self.remote_min_rx_us)

    @property
    def rx_interval_us(self) -> int:
        """The agreed RX interval: max(our Required Min RX in use, the remote's Desired Min TX)."""
        return max(self._in_use[1], self.remote_desired_min_tx_us)

    @property
    def detection_time_us(self) -> int | None:
        """The remote's Detect Mult x the agreed RX interval; None before any packet is accepted."""
        if self.remote_detect_mult is None:
            return None
        return self.remote_detect_mult * self.rx_interval_us

    # ---- events ------------------------------------------------------------
    def receive(self, packet: ControlPacket, now: float) -> Update:
        """A control packet from the codec (which made the session-free 6.8.6 checks) arrived."""
        your = packet.your_discriminator
        if your and your != self.local_discriminator:
            self.bad_packet(f"your discriminator {your} is not ours ({self.local_discriminator})")
            return Update()
        counters = self.counters
        counters.rx += 1
        counters.last_rx = now
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_diag = packet.diag
        self.remote_demand = packet.demand
        self.remote_desired_min_tx_us = packet.desired_min_tx_us
        self.remote_detect_mult = packet.detect_mult
        remote_rx_changed = packet.required_min_rx_us != self.remote_min_rx_us
        self.remote_min_rx_us = packet.required_min_rx_us
        if packet.final and self.polling:
            self.polling = False
            self._in_use = self._advertised
        update = Update()
        if self.state is not State.ADMIN_DOWN:
            update.state_change = self._apply(_EVENT_BY_REMOTE_STATE[packet.state], now)
            self._retarget()
            detection_time = self.detection_time_us
            assert detection_time is not None  # the packet gave the remote's Detect Mult
            self._detect_at = now + detection_time * US
            if packet.poll:
                update.transmit.append(self._send(now, poll=False, final=True))
        self._reschedule(remote_rx_changed)
        return update

    def receive_frame(self, frame: bytes, udp_port: int, now: float) -> Update:
        """A frame to ``udp_port`` arrived on the member: decoded, or counted as bad (never raises)."""
        last = self._last_frame
        if last is not None and last[0] == frame and last[1] == udp_port:
            packet = last[2]
        else:
            try:
                packet = decode_frame(frame, udp_port).packet
            except BfdError as error:
                self.bad_packet(str(error))
                return Update()
            self._last_frame = (bytes(frame), udp_port, packet)
        return self.receive(packet, now)

    def bad_packet(self, reason: str) -> None:
        """Count a packet that was discarded (the codec's :class:`BfdError`, or ours)."""
        self.counters.bad_rx += 1
        self.counters.last_bad_reason = reason

    def tick(self, now: float) -> Update:
        """Run the timers that are due: detection, periodic transmission."""
        update = Update()
        if now < self.deadline:
            return update
        if now >= self._detect_at:
            self._detect_at = math.inf
            self.remote_discriminator = 0
            self.remote_state = State.DOWN
            self.remote_demand = False
            self.remote_min_rx_us = INITIAL_REMOTE_MIN_RX_US
            update.state_change = self._apply(Event.DETECTION_TIME_EXPIRED, now)
            self._retarget()
            self._reschedule(False)  # our reset, not the remote's request: the pending packet says Down on time
        if now >= self._next_tx:
            update.transmit.append(self._send(now, poll=self.polling, final=False))
            self._last_periodic = now
            self._gap_interval_us = self.tx_interval_us
            self._next_tx = now + self._gap(self._gap_interval_us)
        return update

    def set_admin(self, up: bool, now: float) -> Update:
        """Enter AdminDown (``up=False``) or leave it for Down (RFC 5880 6.8.16)."""
        change = self._apply(Event.ADMIN_UP if up else Event.ADMIN_DOWN, now)
        if self.state is State.ADMIN_DOWN:
            self._detect_at = math.inf
        self._retarget()
        self._reschedule(False)
        return Update(state_change=change)

    def reconfigure(self, desired_min_tx_us: int, required_min_rx_us: int, detect_mult: int, now: float) -> Update:
        """New intervals and Detect Mult; while Up, interval changes go through a poll (6.8.3)."""
        self.timers = Timers(desired_min_tx_us, required_min_rx_us, detect_mult)
        self._retarget()
        self._rearm_detection()
        self._reschedule(False)
        return Update()

    # ---- internals -----------------------------------------------------------
    def _apply(self, event: Event, now: float) -> StateChange | None:
        row = TRANSITIONS.get((self.state, event))
        if row is None:
            return None
        new, diag = row
        change = StateChange(self.state, new, diag, event.value, now)
        self.state = new
        self.local_diag = diag
        counters = self.counters
        counters.state_changes += 1
        counters.last_change = change
        if new is State.UP:
            self.ever_up = True
        elif new is State.DOWN or new is State.ADMIN_DOWN:
            counters.last_down = change
        return change

    def _target(self) -> tuple[int, int]:
        """The Desired Min TX and Required Min RX we want to advertise in the current state."""
        timers = self.timers
        if self.state is State.UP:
            return timers.desired_min_tx_us, timers.required_min_rx_us
        return max(timers.desired_min_tx_us, SLOW_TX_US), timers.required_min_rx_us

    def _retarget(self) -> None:
        """Bring the advertised values and those in use to the target, through a poll while Up."""
        target = self._target()
        if self.state is not State.UP:
            self.polling = False
            self._advertised = self._in_use = target
        elif not self.polling and target != self._advertised:
            (tx, rx), (tx_in_use, rx_in_use) = target, self._in_use
            self._in_use = (min(tx, tx_in_use), max(rx, rx_in_use))  # the safe directions now
            self._advertised = target
            self.polling = True
        self._rearm_detection()

    def _rearm_detection(self) -> None:
        """Count the running detection time again from the last packet (our RX interval may have changed)."""
        detection_time, last_rx = self.detection_time_us, self.counters.last_rx
        if self._detect_at != math.inf and detection_time is not None and last_rx is not None:
            self._detect_at = last_rx + detection_time * US

    def _reschedule(self, remote_rx_changed: bool) -> None:
        """Move the pending periodic packet after the TX interval changed (see the module rules)."""
        if self.remote_min_rx_us == 0:
            self._next_tx = math.inf  # RFC 5880 6.8.7: the remote wants no periodic packets
            return
        interval = self.tx_interval_us
        if self._last_periodic is None:
            self._next_tx = -math.inf  # none sent yet: the next tick sends
        elif self._next_tx == math.inf or (
            interval != self._gap_interval_us and (remote_rx_changed or interval < self._gap_interval_us)
        ):
            self._next_tx = self._last_periodic + self._gap(interval)
        else:
            return
        self._gap_interval_us = interval

    def _gap(self, interval_us: int) -> float:
        """Seconds to the next periodic packet: 75-100 % of the interval, 75-90 % with Detect Mult 1."""
        draw = self._jitter()
        factor = 0.9 - 0.15 * draw if self.timers.detect_mult == 1 else 1.0 - 0.25 * draw
        return interval_us * factor * US

    def _send(self, now: float, poll: bool, final: bool) -> ControlPacket:
        counters = self.counters
        counters.tx += 1
        counters.last_tx = now
        tx, rx = self._advertised
        return ControlPacket(
            state=self.state,
            diag=self.local_diag,
            poll=poll,
            final=final,
            detect_mult=self.timers.detect_mult,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx_us=tx,
            required_min_rx_us=rx,
        )
