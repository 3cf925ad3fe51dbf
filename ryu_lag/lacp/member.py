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
- STANDBY (set by the bond while fewer than min_links members could aggregate):
  the mux goes no further than WAITING and leaves ATTACHED and above for
  DETACHED, so our Sync bit is off and the partner stops using the member.
- The gate (set by the bond; BFD's, in the service) is not LACP state: a member
  whose gate is closed runs its machines as before (PDUs, expiry, mux), but it is
  not enabled, so our Distributing bit is off; it is not part of the session.
- After current_while runs out, the member returns to COLLECTING only once a
  partner LACPDU echoes an actor state we transmitted since (Sync aside): a
  partner that cannot hear us keeps echoing our old state, and must not bring
  the member back (a one-way failure would otherwise flap it in and out).
- A session (:class:`MemberSession`) is what a member needs to carry on after a
  controller restart: :meth:`Member.resume` restores it, and the partner's first
  LACPDU confirms it or sends the member back to negotiate from scratch.

Selection is decided by the bond (``ryu_lag.lacp.bond``), which sets
``selected``; nothing here reads a clock: every method takes ``now``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from ryu_lag.lacp.pdu import NULL_PORT_INFO, STATE_BY_OCTET, Lacpdu, LacpState, PortInfo, mac_to_bytes, mac_to_str

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
_ATTACHED_BITS = _SYNCHRONIZATION | _COLLECTING | _DISTRIBUTING


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


_PORT_INFO_FIELDS = ("system_priority", "system", "key", "port_priority", "port", "state")
_SESSION_FIELDS = (
    "partner",
    "partner_matched",
    "partner_has_our_sync",
    "selected",
    "standby",
    "mux",
    "rx_state",
    "actor_state",
    "post_expiry_states",
)


def _field_int(data: dict[str, Any], name: str, maximum: int) -> int:
    value = data[name]
    if type(value) is not int or not 0 <= value <= maximum:
        raise ValueError(f"{name}: not an integer from 0 to {maximum}: {value!r}")
    return value


def _field_bool(data: dict[str, Any], name: str) -> bool:
    value = data[name]
    if type(value) is not bool:
        raise ValueError(f"{name}: not a boolean: {value!r}")
    return value


def _field_dict(data: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not an object: {data!r}")
    if set(data) != set(names):
        raise ValueError(f"{what}: fields {sorted(map(str, data))}, expected {sorted(names)}")
    return data


def _port_info_from_dict(data: Any) -> PortInfo:
    data = _field_dict(data, "partner", _PORT_INFO_FIELDS)
    system = data["system"]
    if not isinstance(system, str):
        raise ValueError(f"system: not a MAC address: {system!r}")
    return PortInfo(
        _field_int(data, "system_priority", 0xFFFF),
        mac_to_str(mac_to_bytes(system)),
        _field_int(data, "key", 0xFFFF),
        _field_int(data, "port_priority", 0xFFFF),
        _field_int(data, "port", 0xFFFF),
        STATE_BY_OCTET[_field_int(data, "state", 0xFF)],
    )


@dataclass(frozen=True)
class MemberSession:
    """What a member needs to carry on its LACP session through a controller restart.

    ``post_expiry_states``: while the member awaits the partner's echo of a state sent
    since its last expiry, the state octets sent since then; ``None`` otherwise.
    ``actor_state`` is our state octet when the session was taken, for the record.
    """

    partner: PortInfo
    partner_matched: bool
    partner_has_our_sync: bool
    selected: bool
    standby: bool
    mux: MuxState
    rx_state: RxState
    actor_state: int
    post_expiry_states: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: enums by value, state octets as integers."""
        p = self.partner
        return {
            "partner": {
                "system_priority": p.system_priority,
                "system": p.system,
                "key": p.key,
                "port_priority": p.port_priority,
                "port": p.port,
                "state": int(p.state),
            },
            "partner_matched": self.partner_matched,
            "partner_has_our_sync": self.partner_has_our_sync,
            "selected": self.selected,
            "standby": self.standby,
            "mux": self.mux.value,
            "rx_state": self.rx_state.value,
            "actor_state": self.actor_state,
            "post_expiry_states": None if self.post_expiry_states is None else list(self.post_expiry_states),
        }

    @classmethod
    def from_dict(cls, data: Any) -> MemberSession:
        """The session :meth:`to_dict` gave; raises ValueError on anything else."""
        data = _field_dict(data, "session", _SESSION_FIELDS)
        try:
            mux, rx_state = MuxState(data["mux"]), RxState(data["rx_state"])
        except (TypeError, ValueError) as exc:  # TypeError: an unhashable value
            raise ValueError(f"bad mux or rx_state: {data['mux']!r}, {data['rx_state']!r}") from exc
        states = data["post_expiry_states"]
        if states is not None:
            if not isinstance(states, list):
                raise ValueError(f"post_expiry_states: not a list: {states!r}")
            states = tuple(_field_int({"state": s}, "state", 0xFF) for s in states)
        return cls(
            partner=_port_info_from_dict(data["partner"]),
            partner_matched=_field_bool(data, "partner_matched"),
            partner_has_our_sync=_field_bool(data, "partner_has_our_sync"),
            selected=_field_bool(data, "selected"),
            standby=_field_bool(data, "standby"),
            mux=mux,
            rx_state=rx_state,
            actor_state=_field_int(data, "actor_state", 0xFF),
            post_expiry_states=states,
        )


@dataclass(slots=True)
class Member:
    """The LACP actor of one bond member.

    A timer that is not running is ``math.inf``, so the earliest deadline is a plain ``min``.
    """

    config: ActorConfig
    link_up: bool = False
    selected: bool = False
    standby: bool = False  # selected, but the bond is below min_links: no further than WAITING (set by the bond)
    enabled: bool = False  # distributing, its gate open, and the bond meets min_links (set by the bond)
    gate_open: bool = True  # the caller lets it carry traffic (BFD); runtime state, not in the session (set by the bond)
    rx_state: RxState = RxState.PORT_DISABLED
    mux: MuxState = MuxState.DETACHED
    partner: PortInfo = DEFAULT_PARTNER
    partner_matched: bool = False  # the partner's view of us equals our actor info
    partner_has_our_sync: bool = False  # ... and, in the partner's latest PDU, shows our Sync
    session_dirty: bool = False  # a session field changed since the bond last looked (the bond clears it)
    resume_refused: bool = False  # the first LACPDU after resume did not confirm the session (the bond clears it)
    counters: Counters = field(default_factory=Counters)
    _current_while: float = math.inf
    _wait_while: float = math.inf
    _waited: bool = False  # wait_while ran out while WAITING (held there by STANDBY)
    _next_periodic: float = math.inf
    _sync_guard: float = math.inf  # runs from our first Sync+Collecting PDU until SYNC_GUARD_TIME later
    _sync_assumed: bool = False  # the guard ran out, or we distributed, since ATTACHED -> COLLECTING
    _ntt: bool = False
    _tx_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=MAX_TX_PER_FAST_PERIOD))
    _last_actor_state: int | None = None
    # Since current_while last ran out: the state octets we sent, Sync cleared; None once the
    # partner echoed one of them (or before any expiry).
    _post_expiry: set[int] | None = None
    _resumed_partner: PortInfo | None = None  # resumed, until the first LACPDU confirms or refuses it
    _previous_actor_id: tuple[int, str, int, int, int] | None = None  # before reconfigure, accepted ...
    _previous_until: float = -math.inf  # ... in the partner's view of us until then
    _config_state: int = field(init=False, repr=False)  # the state bits our configuration fixes
    _actor_id: tuple[int, str, int, int, int] = field(init=False, repr=False)  # our actor info but the state

    def __post_init__(self) -> None:
        self._apply_config()

    def _apply_config(self) -> None:
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
        """The partner is in sync with us, and has echoed us since our last expiry."""
        return self.partner_matched and bool(int(self.partner.state) & _SYNCHRONIZATION) and self._post_expiry is None

    @property
    def awaiting_fresh_echo(self) -> bool:
        """Expired, and no partner LACPDU since has echoed a state we sent after the expiry."""
        return self._post_expiry is not None

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
        """The timeout now running: 0 before any partner is known, else ours (3 or 90 s)."""
        return self.timeout if self.counters.last_rx is not None or self.rx_state is RxState.CURRENT else 0.0

    # ---- sessions and configuration -------------------------------------
    def session(self) -> MemberSession:
        """What this member needs to carry on after a controller restart."""
        post_expiry = None if self._post_expiry is None else tuple(sorted(self._post_expiry))
        return MemberSession(
            partner=self.partner,
            partner_matched=self.partner_matched,
            partner_has_our_sync=self.partner_has_our_sync,
            selected=self.selected,
            standby=self.standby,
            mux=self.mux,
            rx_state=self.rx_state,
            actor_state=self._state_bits(),
            post_expiry_states=post_expiry,
        )

    def resume(self, session: MemberSession, now: float) -> None:
        """Link up, carrying on ``session``: its partner, receive state, selection and mux.

        current_while restarts from ``now``; a LACPDU goes out at the next poll. The first
        LACPDU received confirms the session or sets :attr:`resume_refused`.
        """
        self.link_up = True
        self.partner = session.partner
        self.partner_matched = session.partner_matched
        self.partner_has_our_sync = session.partner_has_our_sync
        self.selected = session.selected
        self.standby = session.standby
        self.rx_state = session.rx_state
        self.mux = session.mux
        if session.rx_state is RxState.CURRENT:
            self._current_while = now + self.timeout
            self._resumed_partner = session.partner
        elif session.rx_state is RxState.EXPIRED:
            self._current_while = now + SHORT_TIMEOUT_TIME
            self._resumed_partner = session.partner
        else:  # DEFAULTED: no partner to confirm
            self._current_while = math.inf
        self._wait_while = now + AGGREGATE_WAIT_TIME if session.mux is MuxState.WAITING else math.inf
        self._sync_assumed = session.mux is MuxState.DISTRIBUTING  # as entering DISTRIBUTING does
        states = session.post_expiry_states
        self._post_expiry = None if states is None else {s & ~_SYNCHRONIZATION for s in states}
        self._next_periodic = now
        self._ntt = True
        self.session_dirty = True

    def reconfigure(self, config: ActorConfig, now: float) -> None:
        """Take new priorities, mode or rate in place; the next LACPDU carries them at once.

        The partner's view of our previous actor information still matches us until it
        echoes the new one or one timeout passes (its PDUs in flight were sent before it
        saw our change). Our running receive timeout follows the new rate.
        """
        if config == self.config:
            return
        old_id, old_timeout = self._actor_id, self.timeout
        self.config = config
        self._apply_config()
        if self._actor_id != old_id:
            self._previous_actor_id = old_id
            self._previous_until = now + self.timeout
        if self.timeout != old_timeout and self.rx_state is RxState.CURRENT:
            self._current_while = now + self.timeout
        self._ntt = True
        self.session_dirty = True

    def leaving_pdu(self) -> Lacpdu:
        """Our last LACPDU as the member leaves the bond: Sync, Collecting and Distributing cleared."""
        self.counters.tx += 1
        state = STATE_BY_OCTET[self._state_bits() & ~_ATTACHED_BITS]
        partner = self.partner if self.rx_state is not RxState.DEFAULTED else NULL_PORT_INFO
        return Lacpdu(actor=PortInfo(*self._actor_id, state), partner=partner)

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
            self._resumed_partner = None
            self._clear_partner_sync()

    def receive(self, pdu: Lacpdu, now: float) -> None:
        """Record a valid LACPDU from the partner."""
        counters = self.counters
        counters.rx += 1
        counters.last_rx = now
        if not self.link_up:
            return
        old = self.partner
        partner_was_fast = int(old.state) & _TIMEOUT
        self.partner = actor = pdu.actor
        if actor is not old and actor != old:
            self.session_dirty = True
        view = pdu.partner  # the partner's view of us
        view_state = int(view.state)
        view_id = (view.system_priority, view.system, view.key, view.port_priority, view.port)
        if view_id == self._actor_id:
            known = True
            if self._previous_actor_id is not None:
                self._previous_actor_id = None  # the partner has our new actor info
        else:
            known = self._previous_actor_id is not None and view_id == self._previous_actor_id and now < self._previous_until
        matched = known and bool(view_state & _AGGREGATION)
        has_our_sync = matched and bool(view_state & _SYNCHRONIZATION)
        if matched != self.partner_matched or has_our_sync != self.partner_has_our_sync:
            self.partner_matched = matched
            self.partner_has_our_sync = has_our_sync
            self.session_dirty = True
        if not matched or view_state != self._state_bits():
            self._ntt = True  # the partner's view of us is stale
        if self._post_expiry is not None and matched and view_state & ~_SYNCHRONIZATION in self._post_expiry:
            self._post_expiry = None  # the partner hears us again
            self.session_dirty = True
        if self._resumed_partner is not None:
            self._confirm_resumed(actor, matched)
        self._set_rx(RxState.CURRENT)
        self._current_while = now + self.timeout
        partner_went_fast = int(actor.state) & _TIMEOUT and not partner_was_fast
        if partner_went_fast or self._next_periodic == math.inf:
            self._next_periodic = now

    def _confirm_resumed(self, actor: PortInfo, matched: bool) -> None:
        """The first LACPDU after resume: the same partner port, which knows us, or renegotiate."""
        was = self._resumed_partner
        self._resumed_partner = None
        same = (actor.system_priority, actor.system, actor.key, actor.port_priority, actor.port) == (
            was.system_priority,
            was.system,
            was.key,
            was.port_priority,
            was.port,
        )
        if not (same and matched):
            self.resume_refused = True

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
            self.session_dirty = True

    def run_timers(self, now: float) -> None:
        """Expire the receive machine's current_while timer and the sync guard when due."""
        if now >= self._sync_guard:
            self._sync_guard = math.inf  # fired once: the mux reads _sync_assumed from now on
            self._sync_assumed = True
        if now < self._current_while:
            return
        if self.rx_state is RxState.CURRENT:
            self.counters.expirations += 1
            self._post_expiry = set()  # until the partner echoes what we send from now on
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
                break
            self.mux = nxt
            self.counters.transitions += 1
            self.session_dirty = True
            self._wait_while = now + AGGREGATE_WAIT_TIME if nxt is MuxState.WAITING else math.inf
            self._waited = False
            self._sync_guard = math.inf  # armed by poll_transmit, only while COLLECTING
            if nxt is MuxState.DISTRIBUTING:
                self._sync_assumed = True  # back from COLLECTING, the partner still has our Sync
            elif nxt is not MuxState.COLLECTING:
                self._sync_assumed = False  # ATTACHED or below: the next COLLECTING asks again
        if now >= self._wait_while:  # held in WAITING by STANDBY: the wait is over, the timer stops
            self._wait_while = math.inf
            self._waited = True

    def _mux_next(self, now: float) -> MuxState | None:
        mux, selected = self.mux, self.selected
        if mux is MuxState.DETACHED:
            return MuxState.WAITING if selected else None
        if mux is MuxState.WAITING:
            if not selected:
                return MuxState.DETACHED
            if self.standby:
                return None
            return MuxState.ATTACHED if self._waited or now >= self._wait_while else None
        if mux is MuxState.ATTACHED:
            if not selected or self.standby:
                return MuxState.DETACHED
            return MuxState.COLLECTING if self.partner_sync else None
        if mux is MuxState.COLLECTING:
            if not selected or self.standby or not self.partner_sync:
                return MuxState.ATTACHED
            if self.partner_collecting and self.partner_may_take_frames(now):
                return MuxState.DISTRIBUTING
            return None
        if not selected or self.standby or not self.partner_sync or not self.partner_collecting:
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
            self.session_dirty = True
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
        post_expiry = self._post_expiry
        if post_expiry is not None and state & ~_SYNCHRONIZATION not in post_expiry:
            post_expiry.add(state & ~_SYNCHRONIZATION)
            self.session_dirty = True
        partner = self.partner if self.rx_state is not RxState.DEFAULTED else NULL_PORT_INFO
        return Lacpdu(actor=PortInfo(*self._actor_id, STATE_BY_OCTET[state]), partner=partner)

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
