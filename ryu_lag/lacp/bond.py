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

min_links: while fewer than min_links members could aggregate (selected, gate open),
those that could are STANDBY (802.1AX): no further than WAITING, our Sync bit off, so
the partner sends nothing on them; and a member distributes (``enabled``) only while
at least min_links members with their gate open are in DISTRIBUTING.

Gates (:meth:`LacpBond.set_gate`; the service's are BFD's): a member whose gate is
closed carries no traffic (not ``enabled``: our Distributing bit off) and does not
count towards min_links, and LACP runs on as before: it stays selected (a candidate;
it does not sway which partner the aggregator takes), its PDUs and timers go on, and
its mux may stay DISTRIBUTING with Sync and Collecting on. It is never STANDBY: a
gate closes only on a member whose partner runs BFD, which holds the member out on
its side too, so clearing Sync would only make it re-attach (through the aggregate
wait) when the gate reopens. A gate is runtime state, not part of the sessions.

Hitless: :meth:`LacpBond.sessions` and :meth:`LacpBond.resume` carry the members'
sessions through a controller restart; :meth:`LacpBond.reconfigure` applies a new
configuration as a diff (only added and removed members change role).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping

from ryu_lag.lacp.member import ActorConfig, Member, MemberSession, Mode, MuxState, Rate, RxState
from ryu_lag.lacp.pdu import FRAME_LEN, Lacpdu, LacpState, PduError, decode_frame

DEFAULT_SYSTEM_PRIORITY = 32768
DEFAULT_PORT_PRIORITY = 32768

PartnerId = tuple[int, str, int]  # system priority, system, key
SelectionKey = tuple[bool, PartnerId, int, int]  # candidate, partner identity, partner port priority, port

_AGGREGATION = int(LacpState.AGGREGATION)

GATE_CLOSED = "gate closed: BFD holds the member out (LACP would let it distribute)"
""":meth:`LacpBond.reason` of a member that LACP lets distribute and whose gate is closed."""


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
    """What the caller must do after an event.

    ``session_changed``: a member's session (:meth:`LacpBond.sessions`) changed; never set by
    a repeated identical LACPDU.
    """

    transmit: list[Transmit] = field(default_factory=list)
    changes: list[MemberChange] = field(default_factory=list)
    session_changed: bool = False

    def extend(self, other: Update) -> None:
        self.transmit.extend(other.transmit)
        self.changes.extend(other.changes)
        self.session_changed = self.session_changed or other.session_changed


class LacpBond:
    """The LACP engine of one bond (one aggregator)."""

    def __init__(self, settings: BondSettings, system: str, ports: Iterable[int]) -> None:
        self.settings = settings
        self.system = system
        self.members: dict[int, Member] = {port: Member(self._actor_config(port)) for port in sorted(set(ports))}
        self.partner_id: PartnerId | None = None
        self._roles: dict[int, tuple[bool, bool]] = {p: (False, False) for p in self.members}
        self._selection_keys: dict[int, SelectionKey] = {}
        # Per member, the last well-formed LACPDU frame (its first FRAME_LEN octets) and its decoding:
        # a partner repeats the same frame until its state changes, so most frames need no decoding.
        self._last_frame: dict[int, tuple[bytes, Lacpdu]] = {}
        self._up = False
        self._deadline = -math.inf

    def _actor_config(self, port: int) -> ActorConfig:
        s = self.settings
        return ActorConfig(
            system=self.system,
            system_priority=s.system_priority,
            key=s.key,
            port=port,
            port_priority=s.port_priority,
            mode=s.mode,
            rate=s.rate,
        )

    @property
    def ports(self) -> tuple[int, ...]:
        """The member ports, in order."""
        return tuple(self.members)

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

    def set_gate(self, port: int, open: bool, now: float) -> Update:
        """Let member ``port`` carry traffic (``open``) or hold it out (BFD down); members start open.

        Closed: the member is not enabled and does not count towards min_links; LACP runs on
        it unchanged. Below min_links, the other members go standby as when links are down.
        """
        member = self.members[port]
        if member.gate_open is open:
            return Update()
        member.gate_open = open
        return self._settle(now, [member], reselect=True)

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
        if member.resume_refused:
            self._renegotiate(member, now)
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

    # ---- sessions and configuration ------------------------------------------
    def sessions(self) -> dict[int, MemberSession]:
        """Every member's session, by port."""
        return {port: member.session() for port, member in self.members.items()}

    def resume(self, sessions: Mapping[int, MemberSession], up_ports: Iterable[int], now: float) -> Update:
        """On a fresh bond, when the switch (re)connects: carry on the recorded sessions.

        A member in ``up_ports`` with a session resumes it (see :meth:`Member.resume`) and
        sends a LACPDU at once; one without a session starts as :meth:`set_link` starts it;
        the others stay link-down. ``changes`` holds every resumed member's role.
        """
        up = set(up_ports)
        resumed: list[Member] = []
        for port, member in self.members.items():
            if port not in up:
                continue
            session = sessions.get(port)
            if session is not None and session.rx_state is not RxState.PORT_DISABLED:
                member.resume(session, now)
                resumed.append(member)
            else:
                member.set_link(True, now)
        ids = collections.Counter(self._partner_id(m) for m in resumed if m.selected)
        if ids:
            self.partner_id = ids.most_common(1)[0][0]
        update = self._settle(now, self.members.values(), reselect=True)
        reported = {change.port for change in update.changes}
        update.changes.extend(MemberChange(m.port, *self._roles[m.port]) for m in resumed if m.port not in reported)
        return update

    def reconfigure(self, settings: BondSettings, ports: Iterable[int], now: float) -> Update:
        """Apply new settings and member ports as a diff; raises ValueError if the key differs.

        Added members start link-down. A removed member leaves with a last LACPDU (Sync,
        Collecting and Distributing cleared) and, unless it had none, the loss of its role.
        Priorities, rate, mode and min_links change in place: no member resets.
        """
        if settings.key != self.settings.key:
            raise ValueError(f"key {settings.key} is not the bond's key {self.settings.key}: a new bond")
        wanted = set(ports)
        if settings == self.settings and wanted == set(self.members):
            return Update()
        update = Update(session_changed=True)
        for port in [p for p in self.members if p not in wanted]:
            member = self.members.pop(port)
            if member.link_up:
                update.transmit.append(Transmit(port, member.leaving_pdu()))
            if self._roles.pop(port) != (False, False):
                update.changes.append(MemberChange(port, False, False))
            self._selection_keys.pop(port, None)
            self._last_frame.pop(port, None)
        self.settings = settings
        for port, member in self.members.items():
            member.reconfigure(self._actor_config(port), now)
        for port in wanted.difference(self.members):
            self.members[port] = Member(self._actor_config(port))
            self._roles[port] = (False, False)
        self.members = dict(sorted(self.members.items()))
        update.extend(self._settle(now, self.members.values(), reselect=True))
        return update

    # ---- views -----------------------------------------------------------
    def distributing_count(self) -> int:
        """Members in DISTRIBUTING with their gate open: those that carry traffic once min_links is met."""
        return sum(1 for m in self.members.values() if m.distributing and m.gate_open)

    def is_up(self) -> bool:
        """The bond carries traffic: at least min_links members distribute with their gate open."""
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
        if member.standby:
            ready = sum(1 for m in self.members.values() if m.selected and m.gate_open)
            gated = sum(1 for m in self.members.values() if m.selected and not m.gate_open)
            held = f", {gated} more held out by their gate" if gated else ""
            return f"bond below min_links ({ready} of {self.settings.min_links} members can aggregate{held}): standby"
        if member.rx_state is RxState.EXPIRED:
            return "partner LACPDUs expired"
        if member.mux is MuxState.WAITING:
            return "aggregate wait"
        if not member.partner_matched:
            return "partner has not yet seen our actor information"
        if member.awaiting_fresh_echo:
            return "partner has not echoed our state since its LACPDUs expired (it may not hear us)"
        if not member.partner_sync:
            return "partner not in sync"
        if not member.distributing:
            if member.partner_collecting:
                return "waiting for the partner to record our synchronization"
            return "partner not collecting"
        if not member.gate_open:
            return GATE_CLOSED
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
        short = sum(1 for port in chosen if self.members[port].gate_open) < self.settings.min_links
        held = []
        for member in self.members.values():
            selected = member.port in chosen
            standby = selected and short and member.gate_open
            if selected is not member.selected or standby is not member.standby:
                member.selected, member.standby = selected, standby
                member.session_dirty = True
            keys[member.port] = self._selection_key(member)
            if member.selected and member.port in changed:
                member.selected = False
                held.append(member)
        return held

    def _renegotiate(self, member: Member, now: float) -> None:
        """A resumed member's partner did not confirm the session: unselected for this event
        (its mux detaches), then selected afresh by the next :meth:`_settle`."""
        member.resume_refused = False
        member.selected = member.standby = False
        member.run_mux(now)
        self._selection_keys.pop(member.port, None)

    def _settle(self, now: float, touched: Collection[Member], reselect: bool = False) -> Update:
        """Bring the bond to rest after events on ``touched`` members.

        Work is limited to those members unless the aggregator's selection or the
        bond's min_links state changes, which concern every member; ``reselect`` runs
        selection and min_links over every member whatever changed (new settings, resume).
        """
        everyone = self.members.values()
        rewired: list[Member] = []
        if reselect or any(self._selection_keys.get(m.port) != self._selection_key(m) for m in touched):
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
        if mux_moved or reselect:  # only a mux move (or min_links) changes whether the bond is up
            up = self.is_up()
            if up != self._up:
                self._up = up
                touched = everyone
        update = Update()
        deadline = self._deadline
        for member in touched:
            member.enabled = up and member.distributing and member.gate_open
            role = (member.collecting, member.enabled)
            if role != self._roles[member.port]:
                self._roles[member.port] = role
                update.changes.append(MemberChange(member.port, *role))
            pdu = member.poll_transmit(now)
            if pdu is not None:
                update.transmit.append(Transmit(member.port, pdu))
            if member.session_dirty:
                member.session_dirty = False
                update.session_changed = True
            deadline = min(deadline, member.next_deadline())
        self._deadline = deadline
        return update
