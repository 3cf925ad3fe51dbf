"""A bond: its members' actors, its aggregator's selection, and min_links.

:class:`LacpBond` takes events (a received frame, a link change, a clock tick)
and returns an :class:`Update`: the LACPDUs to transmit and the members whose
collecting/distributing state changed. It never raises on a bad frame: it
counts it. No I/O, no clock of its own.

Selection: the aggregator takes the partner identity (system priority, system,
key) of its members; a member is SELECTED only when its link is up, its
partner is known from LACPDUs and aggregatable, and that identity matches the
aggregator's. A member cabled to another device or bond stays UNSELECTED and
``reason`` says why.

A member whose partner identity changes (a new device, or the same one with a new
system priority or key) or whose partner port changes (recabled to another port of the
same partner, or a new port priority) is UNSELECTED for the event that records it, as
the Receive machine's update_Selected makes it (802.1AX-2008 5.4.9, 5.4.12), even when every member
changed together and the aggregator simply takes the new identity: its mux goes
DETACHED first, and only then is it selected again, so it comes back through
WAITING (the aggregate wait), ATTACHED and on.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Collection, Iterable

from ryu_lag.lacp.member import ActorConfig, Member, Mode, MuxState, Rate, RxState
from ryu_lag.lacp.pdu import FRAME_LEN, Lacpdu, LacpState, PduError, decode_frame

DEFAULT_SYSTEM_PRIORITY = 32768
DEFAULT_PORT_PRIORITY = 32768

PartnerId = tuple[int, str, int]  # system priority, system, key
SelectionKey = tuple[bool, PartnerId, int, int]  # candidate, partner identity, partner port priority, port

_AGGREGATION = int(LacpState.AGGREGATION)


@dataclass(frozen=True)
class BondSettings:
    """How a bond negotiates; ``key`` identifies the bond to the partner."""

    key: int
    mode: Mode = Mode.ACTIVE
    rate: Rate = Rate.SLOW
    system_priority: int = DEFAULT_SYSTEM_PRIORITY
    port_priority: int = DEFAULT_PORT_PRIORITY
    min_links: int = 1


@dataclass(frozen=True)
class Transmit:
    """Send ``pdu`` out of member ``port``."""

    port: int
    pdu: Lacpdu


@dataclass(frozen=True)
class MemberChange:
    """A member's data-plane role changed."""

    port: int
    collecting: bool
    distributing: bool


@dataclass
class Update:
    """What the caller must do after an event."""

    transmit: list[Transmit] = field(default_factory=list)
    changes: list[MemberChange] = field(default_factory=list)

    def extend(self, other: Update) -> None:
        self.transmit.extend(other.transmit)
        self.changes.extend(other.changes)


class LacpBond:
    """The LACP engine of one bond (one aggregator)."""

    def __init__(self, settings: BondSettings, system: str, ports: Iterable[int]) -> None:
        self.settings = settings
        self.system = system
        self.members: dict[int, Member] = {}
        for port in sorted(set(ports)):
            config = ActorConfig(
                system=system,
                system_priority=settings.system_priority,
                key=settings.key,
                port=port,
                port_priority=settings.port_priority,
                mode=settings.mode,
                rate=settings.rate,
            )
            self.members[port] = Member(config)
        self.partner_id: PartnerId | None = None
        self._roles: dict[int, tuple[bool, bool]] = {p: (False, False) for p in self.members}
        self._selection_keys: dict[int, SelectionKey] = {}
        # Per member, the last well-formed LACPDU frame (its first FRAME_LEN octets) and its decoding:
        # a partner repeats the same frame until its state changes, so most frames need no decoding.
        self._last_frame: dict[int, tuple[bytes, Lacpdu]] = {}
        self._up = False
        self._deadline = -math.inf

    @property
    def deadline(self) -> float:
        """No member timer fires before this; it may be early (tick then recomputes it), never late.

        ``inf`` when no timer runs, ``-inf`` before the first tick. A scheduler need not call
        :meth:`tick` before it.
        """
        return self._deadline

    # ---- events ----------------------------------------------------------
    def set_link(self, port: int, up: bool, now: float) -> Update:
        """The member's link went up or down (PORT_STATUS or port description)."""
        member = self.members[port]
        member.set_link(up, now)
        return self._settle(now, [member])

    def receive_frame(self, port: int, frame: bytes, now: float) -> Update:
        """A slow-protocols frame arrived on member ``port``; bad ones are counted."""
        member = self.members[port]
        raw = bytes(frame[:FRAME_LEN])  # all that decode_frame reads
        last = self._last_frame.get(port)
        if last is not None and last[0] == raw:
            pdu = last[1]
        else:
            try:
                _, pdu = decode_frame(frame)
            except PduError:
                member.bad_pdu()
                return Update()
            self._last_frame[port] = (raw, pdu)
        member.receive(pdu, now)
        return self._settle(now, (member,))

    def tick(self, now: float) -> Update:
        """Run the timers that are due: expiry, aggregate wait, periodic transmission."""
        if now < self._deadline:
            return Update()
        due = [m for m in self.members.values() if m.next_deadline() <= now]
        for member in due:
            member.run_timers(now)
        update = self._settle(now, due)
        deadline = self.next_deadline()
        self._deadline = math.inf if deadline is None else deadline
        return update

    # ---- views -----------------------------------------------------------
    def distributing_count(self) -> int:
        return sum(1 for m in self.members.values() if m.distributing)

    def is_up(self) -> bool:
        """The bond carries traffic: at least min_links members distribute."""
        return self.distributing_count() >= max(1, self.settings.min_links)

    def next_deadline(self) -> float | None:
        """The earliest time a member timer fires, or None when none runs."""
        deadline = min([m.next_deadline() for m in self.members.values()], default=math.inf)
        return None if deadline == math.inf else deadline

    def reason(self, port: int) -> str:
        """Why a member is (not) carrying traffic, in words."""
        member = self.members[port]
        if not member.link_up:
            return "link down"
        if member.rx_state is RxState.DEFAULTED:
            if member.config.mode is Mode.PASSIVE:
                return "no LACPDU from partner (we are passive: partner passive or absent)"
            return "no LACPDU from partner"
        if member.rx_state is RxState.EXPIRED and member.counters.last_rx is None:
            return "waiting for first LACPDU"
        if not member.selected:
            if not member.partner.state & LacpState.AGGREGATION:
                return "partner port is individual (not aggregatable)"
            return (
                f"partner {self._partner_id(member)} differs from the aggregator's partner {self.partner_id}"
            )
        if member.rx_state is RxState.EXPIRED:
            return "partner LACPDUs expired"
        if member.mux is MuxState.WAITING:
            return "aggregate wait"
        if not member.partner_matched:
            return "partner has not yet seen our actor information"
        if not member.partner_sync:
            return "partner not in sync"
        if not member.distributing:
            if member.partner_collecting:
                return "waiting for the partner to record our synchronization"
            return "partner not collecting"
        if not member.enabled:
            return f"bond below min_links ({self.distributing_count()} of {self.settings.min_links})"
        return "distributing"

    # ---- internals -------------------------------------------------------
    @staticmethod
    def _partner_id(member: Member) -> PartnerId:
        p = member.partner
        return (p.system_priority, p.system, p.key)

    def _candidate(self, member: Member) -> bool:
        return (
            member.link_up
            and member.has_partner
            and bool(int(member.partner.state) & _AGGREGATION)
            and member.partner.system != self.system  # looped back to ourselves
        )

    def _selection_key(self, member: Member) -> SelectionKey:
        p = member.partner
        return self._candidate(member), self._partner_id(member), p.port_priority, p.port

    def _select(self, touched: Collection[Member]) -> list[Member]:
        """Choose the aggregator's partner and select the members that have it.

        Returns the members of ``touched`` whose partner identity or partner port changed
        and that the aggregator takes: they are left UNSELECTED here so that their mux
        detaches first (802.1AX-2008 5.4.9 update_Selected, 5.4.15); the caller selects them
        after that.
        """
        keys = self._selection_keys
        changed = {
            m.port for m in touched if (old := keys.get(m.port)) is not None and old[1:] != self._selection_key(m)[1:]
        }
        candidates = [m for m in self.members.values() if self._candidate(m)]
        ids = collections.Counter(self._partner_id(m) for m in candidates)
        if self.partner_id not in ids:
            # Most members first; ties go to the identity of the lowest port.
            order = {pid: -min(m.port for m in candidates if self._partner_id(m) == pid) for pid in ids}
            self.partner_id = max(ids, key=lambda pid: (ids[pid], order[pid]), default=None)
        chosen = {m.port for m in candidates if self._partner_id(m) == self.partner_id}
        held = []
        for member in self.members.values():
            member.selected = member.port in chosen
            keys[member.port] = self._selection_key(member)
            if member.selected and member.port in changed:
                member.selected = False
                held.append(member)
        return held

    def _settle(self, now: float, touched: Collection[Member]) -> Update:
        """Bring the bond to rest after events on ``touched`` members.

        Work is limited to those members unless the aggregator's selection or the
        bond's min_links state changes, which concern every member.
        """
        everyone = self.members.values()
        rewired: list[Member] = []
        if any(self._selection_keys.get(m.port) != self._selection_key(m) for m in touched):
            rewired = self._select(touched)
            touched = everyone
        mux_moved = False
        for member in touched:
            mux = member.mux
            member.run_mux(now)
            mux_moved = mux_moved or member.mux is not mux
        if rewired:  # detached above with its old partner; selected again for its new one: WAITING
            for member in rewired:
                member.selected = True
                member.run_mux(now)
            mux_moved = True
        up = self._up
        if mux_moved:  # only a mux move changes how many members distribute
            up = self.is_up()
            if up != self._up:
                self._up = up
                touched = everyone
        update = Update()
        deadline = self._deadline
        for member in touched:
            member.enabled = up and member.distributing
            role = (member.collecting, member.enabled)
            if role != self._roles[member.port]:
                self._roles[member.port] = role
                update.changes.append(MemberChange(member.port, *role))
            pdu = member.poll_transmit(now)
            if pdu is not None:
                update.transmit.append(Transmit(member.port, pdu))
            deadline = min(deadline, member.next_deadline())
        self._deadline = deadline
        return update
