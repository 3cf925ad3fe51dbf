"""The BFD sessions of one bond's members, and whether BFD lets each member carry traffic.

:class:`BondBfd` is to BFD what :class:`ryu_lag.lacp.LacpBond` is to LACP: it takes events
(a link change, a received frame, a clock tick, a new configuration), each with ``now``, and
returns a :class:`BfdUpdate`: the frames to send out of member ports and the members whose
*gate* changed. A member may carry traffic only while LACP says distributing **and** its gate
is open; the caller combines the two. Nothing here reads a clock or does I/O; bad frames are
counted on their member's session, never raised.

Rules it keeps (issue 12):

- One RFC 5880 session (:class:`BfdSession`) per member, with a local discriminator from the
  allocator the caller gives (unique per switch, see :class:`Discriminators`).
- A member's session runs only while its link is up: a new member's session waits in Down,
  a link that goes down holds it AdminDown; either way no packets, no detection, and frames
  that still arrive on the member are ignored. Link up: Down, and packets on the session's
  schedule (the first at once for a member whose link was never up, else within 1 s).
- **Armed**: a member is armed once its session has come Up. An armed member's gate is open
  only while the session is Up: leaving Up (detection time expired, the partner said Down)
  closes it at once; coming back Up opens it. LACP keeps running throughout.
- A member that is not armed is not gated (its gate is open): a session that never came Up
  means a partner that runs no BFD, and the member runs on LACP alone.
- An armed member is disarmed (back to LACP alone, gate open) when
  - its link goes down: when the link comes back, the member is gated again only once its
    session has come Up again (the partner may have stopped running BFD meanwhile);
  - the partner signals AdminDown (RFC 5880 6.8.16: not a failure of the path);
  - the session has heard nothing for :data:`SILENT_PARTNER_TIME` while not Up: the partner
    stopped running BFD, or its packets no longer reach us. Past LACP's longest timeout,
    LACP alone says whether the path works: a dead path has left LACP distributing long ago.
- Frames: the configured encapsulation, from the member port's MAC, UDP source port
  :func:`source_port` of the session's discriminator. Frames for ports that are not members
  are ignored.
- :meth:`BondBfd.reconfigure` is a diff: sessions of members that stay keep running (new
  intervals go through the engine's poll/final while Up), added members start link-down,
  removed members are forgotten.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ryu_lag.bfd.packet import (
    ETH_HEADER_LEN,
    ETH_TYPE_IPV4,
    IP_PROTO_UDP,
    IPV4_HEADER_LEN,
    MAX_DETECT_MULT,
    MAX_DISCRIMINATOR,
    MICRO_BFD_DST_MAC,
    OVS_DST_IP,
    OVS_DST_MAC,
    OVS_SRC_IP,
    UDP_HEADER_LEN,
    ControlPacket,
    Encapsulation,
    EncapsulationKind,
    State,
    diag_name,
    encode_frame,
    source_port,
)
from ryu_lag.bfd.session import BfdSession, StateChange

MIN_INTERVAL_MS = 10
MAX_INTERVAL_MS = 10_000
MIN_MULTIPLIER = 1
MAX_MULTIPLIER = MAX_DETECT_MULT
DEFAULT_MIN_TX_MS = 100
DEFAULT_MIN_RX_MS = 100
DEFAULT_MULTIPLIER = 3
DEFAULT_DST_MAC = {EncapsulationKind.OVS: OVS_DST_MAC, EncapsulationKind.RFC7130: MICRO_BFD_DST_MAC}
US_PER_MS = 1000

SILENT_PARTNER_TIME = 90.0
"""Seconds without a BFD packet, while not Up, after which an armed member runs on LACP alone (LACP's long timeout)."""

_ETH_TYPE_IPV4 = ETH_TYPE_IPV4.to_bytes(2, "big")
_STALE_TIMERS_FACTOR = 2  # the timer queue is rebuilt once it holds more than this many entries per member
_STALE_TIMERS_SLACK = 16  # (plus this many), so stale entries cost at most a constant factor


@dataclass(frozen=True)
class BfdConfig:
    """A bond's BFD settings: intervals in milliseconds, the encapsulation and its addresses.

    ``dst_mac`` None means the encapsulation's (Open vSwitch's 00:23:20:00:00:01, RFC 7130's
    01:00:5e:90:00:01); it is filled in, so equal settings compare equal. Ranges are checked
    by :func:`ryu_lag.config.bfd_config_from_dict`; malformed addresses raise ValueError here.
    """

    min_tx_ms: int = DEFAULT_MIN_TX_MS
    min_rx_ms: int = DEFAULT_MIN_RX_MS
    multiplier: int = DEFAULT_MULTIPLIER
    encapsulation: EncapsulationKind = EncapsulationKind.OVS
    dst_mac: str | None = None
    src_ip: str = OVS_SRC_IP
    dst_ip: str = OVS_DST_IP
    frame_encapsulation: Encapsulation = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dst_mac is None:
            object.__setattr__(self, "dst_mac", DEFAULT_DST_MAC[self.encapsulation])
        assert self.dst_mac is not None
        encapsulation = Encapsulation(self.encapsulation, self.dst_mac, self.src_ip, self.dst_ip)
        object.__setattr__(self, "frame_encapsulation", encapsulation)

    @property
    def udp_port(self) -> int:
        """The UDP destination port of control packets (3784 for Open vSwitch's, 6784 for RFC 7130)."""
        return self.frame_encapsulation.udp_port

    def timers_us(self) -> tuple[int, int, int]:
        """Desired Min TX and Required Min RX in microseconds, and the Detect Mult."""
        return self.min_tx_ms * US_PER_MS, self.min_rx_ms * US_PER_MS, self.multiplier

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the inverse of ``ryu_lag.config.bfd_config_from_dict``)."""
        return {
            "min_tx_ms": self.min_tx_ms,
            "min_rx_ms": self.min_rx_ms,
            "multiplier": self.multiplier,
            "encapsulation": self.encapsulation.value,
            "dst_mac": self.dst_mac,
            "src_ip": self.src_ip,
            "dst_ip": self.dst_ip,
        }


def is_bfd_frame(frame: bytes, config: BfdConfig) -> bool:
    """Cheap check for the packet-in path: IPv4, UDP, to the encapsulation's port (not validated further)."""
    if len(frame) < ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN or frame[12:14] != _ETH_TYPE_IPV4:
        return False
    ver_ihl = frame[ETH_HEADER_LEN]
    if ver_ihl >> 4 != 4 or ver_ihl & 0x0F < IPV4_HEADER_LEN // 4 or frame[ETH_HEADER_LEN + 9] != IP_PROTO_UDP:
        return False
    dst_port_at = ETH_HEADER_LEN + (ver_ihl & 0x0F) * 4 + 2
    return frame[dst_port_at : dst_port_at + 2] == config.udp_port.to_bytes(2, "big")


def state_name(state: State) -> str:
    """A session state as RFC 5880 writes it: AdminDown, Down, Init, Up."""
    return _STATE_NAMES[state]


_STATE_NAMES = {State.ADMIN_DOWN: "AdminDown", State.DOWN: "Down", State.INIT: "Init", State.UP: "Up"}


class Discriminators:
    """Local discriminators for one switch: ``first``, then one more per call, wrapping from 2**32-1 to 1.

    RFC 5880 6.8.1 asks for nonzero values unique among the system's sessions; a bond
    takes one per member, so a wrap needs four billion members created first.
    """

    def __init__(self, first: int = 1) -> None:
        if not 1 <= first <= MAX_DISCRIMINATOR:
            raise ValueError(f"discriminator {first} is outside 1-{MAX_DISCRIMINATOR}")
        self._next = first

    def __call__(self) -> int:
        value = self._next
        self._next = value % MAX_DISCRIMINATOR + 1
        return value


class Disarmed(enum.Enum):
    """Why a member whose session is not Up is not gated; the value is the reason in words."""

    NEVER_UP = "the BFD session never came Up since the link came up: the partner runs no BFD"
    PARTNER_ADMIN_DOWN = "the partner holds its BFD session AdminDown"
    SILENT_PARTNER = f"no BFD packet for {SILENT_PARTNER_TIME:g} s: the partner stopped running BFD"


@dataclass
class BfdMember:
    """One member's session and what BondBfd knows of its port."""

    port: int
    session: BfdSession
    link_up: bool = False
    mac: str | None = None
    armed: bool = False  # the session came Up on both sides since the link came up, and nothing disarmed it since
    disarmed: Disarmed = Disarmed.NEVER_UP  # why it is not armed (meaningful while not armed)
    last_frame: tuple[ControlPacket, bytes] | None = None  # the last packet sent and its frame: most repeat
    wake_at: float = math.inf  # when BondBfd next runs this member's timers (``inf``: not scheduled)

    @property
    def gate_open(self) -> bool:
        """BFD lets the member carry traffic: not armed, or the session is Up on both sides.

        Both: our session goes Up on the partner's Init, but Open vSwitch forwards on the
        member only once its own session is Up, on our next packet (up to an interval later).
        """
        session = self.session
        return not self.armed or (session.state is State.UP and session.remote_state is State.UP)

    @property
    def disarm_at(self) -> float:
        """When an armed member whose session is not Up runs on LACP alone (``inf``: not pending)."""
        last_rx = self.session.counters.last_rx
        if not self.armed or self.session.state is State.UP or last_rx is None:
            return math.inf
        return last_rx + SILENT_PARTNER_TIME


@dataclass
class BfdUpdate:
    """What the caller must do after an event.

    ``transmit``: (member port, whole Ethernet frame) to send out of that port.
    ``gate_changes``: (member port, gate open) for members whose gate changed.
    ``state_changes``: (member port, change) for members whose session changed state.
    """

    transmit: list[tuple[int, bytes]] = field(default_factory=list)
    gate_changes: list[tuple[int, bool]] = field(default_factory=list)
    state_changes: list[tuple[int, StateChange]] = field(default_factory=list)


class BondBfd:
    """The BFD sessions of one bond's members.

    ``discriminators`` returns a new local discriminator per call (unique per switch);
    ``jitter`` is the sessions' random source (floats in [0, 1)). Members start link-down.

    The deadline is kept incrementally: an event recomputes only its own member's next wake
    and a queue of (wake, port) gives the earliest, so a packet costs O(log members), not
    O(members). Drive the sessions through this class: a change made to a member's session
    directly is seen at that member's next event.
    """

    def __init__(
        self,
        config: BfdConfig,
        ports: Iterable[int],
        discriminators: Callable[[], int],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._discriminators = discriminators
        self._jitter = jitter
        self.members: dict[int, BfdMember] = {}
        for port in sorted(set(ports)):
            self.members[port] = self._new_member(port)
        # (wake_at, port) of members whose timers run; an entry whose member no longer wakes
        # at that time is stale and dropped when it reaches the top.
        self._timers: list[tuple[float, int]] = []
        self._deadline = math.inf

    def _new_member(self, port: int) -> BfdMember:
        """A link-down member: its session is Down and runs no timer until the link comes up."""
        tx_us, rx_us, mult = self.config.timers_us()
        return BfdMember(port, BfdSession(self._discriminators(), tx_us, rx_us, mult, jitter=self._jitter))

    # ---- views -----------------------------------------------------------
    @property
    def ports(self) -> tuple[int, ...]:
        """The member ports, in order."""
        return tuple(self.members)

    @property
    def deadline(self) -> float:
        """No timer fires before this (``inf`` when none runs); a scheduler need not tick before it."""
        return self._deadline

    def gate_open(self, port: int) -> bool:
        """Whether BFD lets member ``port`` carry traffic (LACP must say distributing too)."""
        return self.members[port].gate_open

    def gating(self, port: int) -> bool:
        """Whether BFD has a say for member ``port``: armed (its session came Up since its link did)."""
        return self.members[port].armed

    def reason(self, port: int) -> str:
        """Why BFD does or does not let member ``port`` carry traffic, in words."""
        member = self.members[port]
        session = member.session
        if not member.link_up:
            return "link down: the BFD session waits for the link to come up"
        if member.armed:
            if session.state is State.UP:
                return "BFD Up: the member carries traffic while LACP distributes"
            return (
                f"BFD session {state_name(session.state)} ({diag_name(session.local_diag)}):"
                " the member is out of the bond until BFD is Up again"
            )
        if member.disarmed is Disarmed.NEVER_UP and session.remote_discriminator:
            return f"BFD session {state_name(session.state)}, not Up yet: the member runs on LACP alone until it is"
        return f"{member.disarmed.value}; the member runs on LACP alone"

    # ---- events ------------------------------------------------------------
    def set_link(self, port: int, up: bool, now: float, mac: str | None = None) -> BfdUpdate:
        """Member ``port``'s link went up (``mac``: its MAC, required unless known) or down."""
        member = self.members[port]
        if mac is not None:
            member.mac = mac
            member.last_frame = None
        if up == member.link_up:
            return BfdUpdate()
        if up and member.mac is None:
            raise ValueError(f"port {port}: a link that comes up needs its MAC")
        update = BfdUpdate()
        gate = member.gate_open
        member.link_up = up
        member.armed = False
        member.disarmed = Disarmed.NEVER_UP
        session = member.session
        if not up or session.state is State.ADMIN_DOWN:  # a new member's session is Down already
            self._note(member, session.set_admin(up, now).state_change, update)
        if up:
            self._run_timers(member, now, update)
        self._gate(member, gate, update)
        self._schedule(member)
        return update

    def receive_frame(self, port: int, frame: bytes, now: float) -> BfdUpdate:
        """A BFD frame arrived on member ``port``; garbled ones are counted on its session, never raised."""
        member = self.members.get(port)
        update = BfdUpdate()
        if member is None or not member.link_up:
            return update  # no longer a member (removed by a reconfiguration), or a race with its link going down
        gate = member.gate_open
        session_update = member.session.receive_frame(frame, self.config.udp_port, now)
        self._note(member, session_update.state_change, update)
        self._arm(member)  # the partner's Up may follow ours: no state change of ours then
        self._send(member, session_update.transmit, update)
        if member.armed and member.session.state is not State.UP and member.session.remote_state is State.ADMIN_DOWN:
            member.armed = False
            member.disarmed = Disarmed.PARTNER_ADMIN_DOWN
        self._gate(member, gate, update)
        self._schedule(member)
        return update

    def tick(self, now: float) -> BfdUpdate:
        """Run the timers that are due: detection, periodic transmission, silent partners."""
        update = BfdUpdate()
        if now < self._deadline:
            return update
        timers, members, due = self._timers, self.members, []
        while timers and timers[0][0] <= now:
            wake_at, port = heapq.heappop(timers)
            member = members.get(port)
            if member is not None and member.wake_at == wake_at:
                member.wake_at = math.inf  # its entry is gone: _schedule pushes the next one
                due.append(member)
        due.sort(key=lambda m: m.port)  # in port order, as the members are
        for member in due:
            gate = member.gate_open
            self._run_timers(member, now, update)
            self._gate(member, gate, update)
            self._schedule(member)
        self._settle()
        return update

    def reconfigure(self, config: BfdConfig, ports: Iterable[int], now: float) -> BfdUpdate:
        """New settings and member ports, as a diff: members that stay keep their sessions running."""
        wanted = set(ports)
        for port in [p for p in self.members if p not in wanted]:
            del self.members[port]
        old, self.config = self.config, config
        if config.timers_us() != old.timers_us():
            for member in self.members.values():
                member.session.reconfigure(*config.timers_us(), now)
        if config.frame_encapsulation != old.frame_encapsulation:
            for member in self.members.values():
                member.last_frame = None
        for port in wanted.difference(self.members):
            self.members[port] = self._new_member(port)
        self.members = dict(sorted(self.members.items()))
        for member in self.members.values():
            member.wake_at = self._wake_at(member)
        self._rebuild_timers()
        return BfdUpdate()

    # ---- internals -----------------------------------------------------------
    def _run_timers(self, member: BfdMember, now: float, update: BfdUpdate) -> None:
        session_update = member.session.tick(now)
        self._note(member, session_update.state_change, update)
        self._send(member, session_update.transmit, update)
        if now >= member.disarm_at:
            member.armed = False
            member.disarmed = Disarmed.SILENT_PARTNER

    def _note(self, member: BfdMember, change: StateChange | None, update: BfdUpdate) -> None:
        if change is None:
            return
        update.state_changes.append((member.port, change))
        self._arm(member)

    @staticmethod
    def _arm(member: BfdMember) -> None:
        """BFD starts gating a member once its session is Up on both sides (then the partner forwards on it)."""
        session = member.session
        if session.state is State.UP and session.remote_state is State.UP:
            member.armed = True

    def _gate(self, member: BfdMember, before: bool, update: BfdUpdate) -> None:
        if member.gate_open != before:
            update.gate_changes.append((member.port, member.gate_open))

    def _send(self, member: BfdMember, packets: list[ControlPacket], update: BfdUpdate) -> None:
        assert member.mac is not None  # only members whose link is up send, and set_link refuses one without a MAC
        for packet in packets:
            last = member.last_frame
            if last is not None and last[0] == packet:
                frame = last[1]
            else:
                port = source_port(member.session.local_discriminator)
                frame = encode_frame(self.config.frame_encapsulation, member.mac, port, packet)
                member.last_frame = (packet, frame)
            update.transmit.append((member.port, frame))

    @staticmethod
    def _wake_at(member: BfdMember) -> float:
        """When the member's timers next need running: its session's or its disarming (``inf``: link down)."""
        if not member.link_up:
            return math.inf
        return min(member.session.deadline, member.disarm_at)

    def _schedule(self, member: BfdMember) -> None:
        """After an event on ``member`` (the only one whose timers it moved): queue its next wake, settle the deadline."""
        wake_at = self._wake_at(member)
        if wake_at == member.wake_at:
            return  # no member's wake moved: the deadline stands
        member.wake_at = wake_at
        if wake_at != math.inf:
            heapq.heappush(self._timers, (wake_at, member.port))
        if len(self._timers) > _STALE_TIMERS_FACTOR * len(self.members) + _STALE_TIMERS_SLACK:
            self._rebuild_timers()
        else:
            self._settle()

    def _rebuild_timers(self) -> None:
        """One entry per scheduled member, none stale."""
        self._timers = [(m.wake_at, port) for port, m in self.members.items() if m.wake_at != math.inf]
        heapq.heapify(self._timers)
        self._settle()

    def _settle(self) -> None:
        """Drop stale entries from the top of the queue; the deadline is then the earliest member's wake."""
        timers, members = self._timers, self.members
        while timers:
            wake_at, port = timers[0]
            member = members.get(port)
            if member is not None and member.wake_at == wake_at:
                self._deadline = wake_at
                return
            heapq.heappop(timers)
        self._deadline = math.inf
