"""One bond member's LACP actor: receive, periodic/transmit and mux machines.

Rules this module keeps (802.1AX-2008 clause 5.4):
- How long we wait before expiring follows OUR Timeout bit (3 s short, 90 s
  long); how often we transmit follows the PARTNER's Timeout bit (1 s / 30 s).
- A passive actor transmits only while its partner is active.
- Any change of our actor state sets need-to-transmit; at most
  ``MAX_TX_PER_FAST_PERIOD`` PDUs go out per fast periodic time.
- The periodic timer starts when periodic transmission starts (link up, or a
  passive actor hearing an active partner) and restarts when the partner goes
  from slow to fast; otherwise it runs from its own expiries, so a late tick
  delays one PDU, not the member's later ones, and members keep their phases.
- State bits tell the truth: Sync only when attached, Collecting/Distributing
  only when the mux is there, Defaulted/Expired from the receive machine.
- Distributing waits until the partner can take our frames: after ATTACHED ->
  COLLECTING, the mux enters DISTRIBUTING only once the partner's latest LACPDU
  shows that it recorded our actor information with Synchronization, or
  ``SYNC_GUARD_TIME`` after our first LACPDU carrying Sync and Collecting went
  out, whichever comes first (see ``SYNC_GUARD_TIME``).

Selection is decided by the bond (``ryu_lag.lacp.bond``), which sets
``selected``; nothing here reads a clock: every method takes ``now``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from dataclasses import dataclass, field

from ryu_lag.lacp.pdu import NULL_PORT_INFO, STATE_BY_OCTET, Lacpdu, LacpState, PortInfo

FAST_PERIODIC_TIME = 1.0
SLOW_PERIODIC_TIME = 30.0
SHORT_TIMEOUT_TIME = 3.0
LONG_TIMEOUT_TIME = 90.0
AGGREGATE_WAIT_TIME = 2.0
MAX_TX_PER_FAST_PERIOD = 3
# How long after our first LACPDU with Sync+Collecting on a member (re)attaching we
# assume the partner has processed it, when no PDU of the partner has shown it yet.
# Not in 802.1AX, whose mux (5.4.15, independent control) goes COLLECTING ->
# DISTRIBUTING on the partner's Sync and Collecting bits alone. Open vSwitch advertises
# Sync+Collecting before it has seen our Sync, but accepts frames on the member only
# once it has (bond_check_admissibility: enabled || may_enable), and does not always
# answer a change of our state with a PDU: a frame we distribute within a few ms of our
# Sync PDU is dropped. 0.1 s covers its processing delay many times over while
# delaying a recovering member by no more than that.
SYNC_GUARD_TIME = 0.1

# The partner we assume before hearing one: passive, short timeout, not aggregatable.
DEFAULT_PARTNER = PortInfo(0, "00:00:00:00:00:00", 0, 0, 0, LacpState.TIMEOUT)

# State bits as plain ints: the hot paths test bits on ints, not through IntFlag's operators.
_ACTIVITY = int(LacpState.ACTIVITY)
_TIMEOUT = int(LacpState.TIMEOUT)
_AGGREGATION = int(LacpState.AGGREGATION)
_SYNCHRONIZATION = int(LacpState.SYNCHRONIZATION)
_COLLECTING = int(LacpState.COLLECTING)
_DISTRIBUTING = int(LacpState.DISTRIBUTING)
_DEFAULTED = int(LacpState.DEFAULTED)
_EXPIRED = int(LacpState.EXPIRED)


class Mode(enum.Enum):
    ACTIVE = "active"
    PASSIVE = "passive"


class Rate(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class RxState(enum.Enum):
    PORT_DISABLED = "port_disabled"
    EXPIRED = "expired"
    DEFAULTED = "defaulted"
    CURRENT = "current"


class MuxState(enum.Enum):
    DETACHED = "detached"
    WAITING = "waiting"
    ATTACHED = "attached"
    COLLECTING = "collecting"
    DISTRIBUTING = "distributing"


@dataclass(frozen=True)
class ActorConfig:
    """Our side of one member: fixed while the bond exists."""

    system: str
    system_priority: int
    key: int
    port: int
    port_priority: int
    mode: Mode
    rate: Rate


@dataclass
class Counters:
    """Per-member counters."""

    rx: int = 0
    tx: int = 0
    bad_rx: int = 0
    expirations: int = 0
    transitions: int = 0
    last_rx: float | None = None


@dataclass(slots=True)
class Member:
    """The LACP actor of one bond member.

    A timer that is not running is ``math.inf``, so the earliest deadline is a plain ``min``.
    """

    config: ActorConfig
    link_up: bool = False
    selected: bool = False
    enabled: bool = False  # distributing and the bond meets min_links (set by the bond)
    rx_state: RxState = RxState.PORT_DISABLED
    mux: MuxState = MuxState.DETACHED
    partner: PortInfo = DEFAULT_PARTNER
    partner_matched: bool = False  # the partner's view of us equals our actor info
    partner_has_our_sync: bool = False  # ... and, in the partner's latest PDU, shows our Sync
    counters: Counters = field(default_factory=Counters)
    _current_while: float = math.inf
    _wait_while: float = math.inf
    _next_periodic: float = math.inf
    _sync_guard: float = math.inf  # runs from our first Sync+Collecting PDU until SYNC_GUARD_TIME later
    _sync_assumed: bool = False  # the guard ran out, or we distributed, since ATTACHED -> COLLECTING
    _ntt: bool = False
    _tx_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=MAX_TX_PER_FAST_PERIOD))
    _last_actor_state: int | None = None
    _config_state: int = field(init=False, repr=False)  # the state bits our configuration fixes
    _actor_id: tuple[int, str, int, int, int] = field(init=False, repr=False)  # our actor info but the state

    def __post_init__(self) -> None:
        c = self.config
        self._config_state = (
            _AGGREGATION | (_ACTIVITY if c.mode is Mode.ACTIVE else 0) | (_TIMEOUT if c.rate is Rate.FAST else 0)
        )
        self._actor_id = (c.system_priority, c.system, c.key, c.port_priority, c.port & 0xFFFF)

    # ---- derived views -------------------------------------------------
    @property
    def port(self) -> int:
        return self.config.port

    @property
    def timeout(self) -> float:
        """Our receive timeout, from our own Timeout bit."""
        return SHORT_TIMEOUT_TIME if self.config.rate is Rate.FAST else LONG_TIMEOUT_TIME

    @property
    def partner_sync(self) -> bool:
        return self.partner_matched and bool(int(self.partner.state) & _SYNCHRONIZATION)

    @property
    def partner_collecting(self) -> bool:
        return bool(int(self.partner.state) & _COLLECTING)

    @property
    def collecting(self) -> bool:
        return self.mux is MuxState.COLLECTING or self.mux is MuxState.DISTRIBUTING

    @property
    def distributing(self) -> bool:
        return self.mux is MuxState.DISTRIBUTING

    @property
    def has_partner(self) -> bool:
        """A partner is known from a LACPDU (current, or expired but not yet defaulted)."""
        return self.rx_state is RxState.CURRENT or self.rx_state is RxState.EXPIRED

    def _state_bits(self) -> int:
        """Our actor state as an int."""
        bits = self._config_state
        mux = self.mux
        if mux is MuxState.DISTRIBUTING or mux is MuxState.COLLECTING:
            bits |= _SYNCHRONIZATION | _COLLECTING
        elif mux is MuxState.ATTACHED:
            bits |= _SYNCHRONIZATION
        if self.enabled:
            bits |= _DISTRIBUTING
        if self.rx_state is RxState.DEFAULTED:
            bits |= _DEFAULTED
        elif self.rx_state is RxState.EXPIRED:
            bits |= _EXPIRED
        return bits

    def actor_state(self) -> LacpState:
        return STATE_BY_OCTET[self._state_bits()]

    def actor_info(self) -> PortInfo:
        return PortInfo(*self._actor_id, self.actor_state())

    def periodic_enabled(self) -> bool:
        if not self.link_up:
            return False
        return bool(self._config_state & _ACTIVITY) or bool(int(self.partner.state) & _ACTIVITY)

    def periodic_time(self) -> float:
        """Our transmit interval, from the partner's Timeout bit."""
        return FAST_PERIODIC_TIME if int(self.partner.state) & _TIMEOUT else SLOW_PERIODIC_TIME

    def lacp_timeout_seconds(self) -> float:
        """The timeout now running: 0 before any LACPDU, else ours (3 or 90 s)."""
        return self.timeout if self.counters.last_rx is not None else 0.0

    # ---- receive machine -----------------------------------------------
    def set_link(self, up: bool, now: float) -> None:
        if up == self.link_up:
            return
        self.link_up = up
        if up:
            self._enter_expired(now)
        else:
            self._set_rx(RxState.PORT_DISABLED)
            self._current_while = math.inf
            self._clear_partner_sync()

    def receive(self, pdu: Lacpdu, now: float) -> None:
        """Record a valid LACPDU from the partner."""
        counters = self.counters
        counters.rx += 1
        counters.last_rx = now
        if not self.link_up:
            return
        partner_was_fast = int(self.partner.state) & _TIMEOUT
        self.partner = actor = pdu.actor
        view = pdu.partner  # the partner's view of us
        view_state = int(view.state)
        self.partner_matched = matched = (
            view.system_priority,
            view.system,
            view.key,
            view.port_priority,
            view.port,
        ) == self._actor_id and bool(view_state & _AGGREGATION)
        self.partner_has_our_sync = matched and bool(view_state & _SYNCHRONIZATION)
        if not matched or view_state != self._state_bits():
            self._ntt = True  # the partner's view of us is stale
        self._set_rx(RxState.CURRENT)
        self._current_while = now + self.timeout
        partner_went_fast = int(actor.state) & _TIMEOUT and not partner_was_fast
        if partner_went_fast or self._next_periodic == math.inf:
            self._next_periodic = now

    def bad_pdu(self) -> None:
        self.counters.bad_rx += 1

    def _enter_expired(self, now: float) -> None:
        self._set_rx(RxState.EXPIRED)
        partner_was_fast = int(self.partner.state) & _TIMEOUT
        # Partner out of sync; ask for its PDUs at the fast rate to recover quickly.
        self.partner = dataclasses.replace(
            self.partner, state=(self.partner.state | LacpState.TIMEOUT) & ~LacpState.SYNCHRONIZATION
        )
        self.partner_has_our_sync = False
        self._current_while = now + SHORT_TIMEOUT_TIME
        if not partner_was_fast or self._next_periodic == math.inf:
            self._next_periodic = now  # periodic transmission starts, or goes from slow to fast

    def _clear_partner_sync(self) -> None:
        self.partner = dataclasses.replace(self.partner, state=self.partner.state & ~LacpState.SYNCHRONIZATION)
        self.partner_has_our_sync = False

    def _set_rx(self, state: RxState) -> None:
        if state is not self.rx_state:
            self.rx_state = state
            self.counters.transitions += 1

    def run_timers(self, now: float) -> None:
        """Expire the receive machine's current_while timer and the sync guard when due."""
        if now >= self._sync_guard:
            self._sync_guard = math.inf  # fired once: the mux reads _sync_assumed from now on
            self._sync_assumed = True
        if now < self._current_while:
            return
        if self.rx_state is RxState.CURRENT:
            self.counters.expirations += 1
            self._enter_expired(now)
        elif self.rx_state is RxState.EXPIRED:
            self._set_rx(RxState.DEFAULTED)
            self.partner = DEFAULT_PARTNER
            self.partner_matched = False
            self.partner_has_our_sync = False
            self._current_while = math.inf

    # ---- mux machine ---------------------------------------------------
    def run_mux(self, now: float) -> None:
        """Step the mux machine until it rests (independent control)."""
        while True:
            nxt = self._mux_next(now)
            if nxt is None:
                return
            self.mux = nxt
            self.counters.transitions += 1
            self._wait_while = now + AGGREGATE_WAIT_TIME if nxt is MuxState.WAITING else math.inf
            self._sync_guard = math.inf  # armed by poll_transmit, only while COLLECTING
            if nxt is MuxState.DISTRIBUTING:
                self._sync_assumed = True  # back from COLLECTING, the partner still has our Sync
            elif nxt is not MuxState.COLLECTING:
                self._sync_assumed = False  # ATTACHED or below: the next COLLECTING asks again

    def _mux_next(self, now: float) -> MuxState | None:
        mux, selected = self.mux, self.selected
        if mux is MuxState.DETACHED:
            return MuxState.WAITING if selected else None
        if mux is MuxState.WAITING:
            if not selected:
                return MuxState.DETACHED
            return MuxState.ATTACHED if now >= self._wait_while else None
        if mux is MuxState.ATTACHED:
            if not selected:
                return MuxState.DETACHED
            return MuxState.COLLECTING if self.partner_sync else None
        if mux is MuxState.COLLECTING:
            if not selected or not self.partner_sync:
                return MuxState.ATTACHED
            if self.partner_collecting and self.partner_may_take_frames(now):
                return MuxState.DISTRIBUTING
            return None
        if not selected or not self.partner_sync or not self.partner_collecting:
            return MuxState.COLLECTING
        return None

    def partner_may_take_frames(self, now: float) -> bool:
        """The partner has recorded our Sync (its latest PDU says so), or the sync guard ran out."""
        return self.partner_has_our_sync or self._sync_assumed or now >= self._sync_guard

    # ---- periodic and transmit machines ---------------------------------
    def poll_transmit(self, now: float) -> Lacpdu | None:
        """The PDU to send now, if any (need-to-transmit or periodic, rate limited)."""
        state = self._state_bits()
        if state != self._last_actor_state:
            self._last_actor_state = state
            self._ntt = True
        if not self.periodic_enabled():
            self._next_periodic = math.inf
            self._ntt = False
            return None
        if now >= self._next_periodic:
            self._ntt = True
            self._next_periodic = self._periodic_after(now)
        if not self._ntt:
            return None
        if len(self._tx_times) == MAX_TX_PER_FAST_PERIOD and now < self._tx_times[0] + FAST_PERIODIC_TIME:
            return None  # rate limited: stays pending (until the time next_deadline names)
        self._ntt = False
        self._tx_times.append(now)
        self.counters.tx += 1
        if self.mux is MuxState.COLLECTING and self._sync_guard == math.inf and not self._sync_assumed:
            self._sync_guard = now + SYNC_GUARD_TIME  # our first Sync+Collecting PDU since attaching
        partner = self.partner if self.rx_state is not RxState.DEFAULTED else NULL_PORT_INFO
        return Lacpdu(actor=self.actor_info(), partner=partner)

    def _periodic_after(self, now: float) -> float:
        """When the periodic timer, which expired at ``_next_periodic``, expires next.

        It restarts from its own expiry, not from ``now`` (a tick that may come late and
        serves many members): a late tick delays this PDU only, not every later one, and
        members keep the phases their own events gave them.
        """
        period = self.periodic_time()
        following = self._next_periodic + period
        if following <= now:  # a whole period or more late: skip the missed expiries
            following += period * ((now - following) // period + 1)
        return following

    def next_deadline(self) -> float:
        """The earliest time a timer of this member fires (for schedulers); inf if none runs."""
        deadline = min(self._current_while, self._wait_while, self._next_periodic, self._sync_guard)
        if self._ntt and self._tx_times:
            return min(deadline, self._tx_times[0] + FAST_PERIODIC_TIME)
        return deadline
