"""A tiny discrete-time harness: LACP bonds joined by wires, with a fake clock."""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass, field

from ryu_lag.lacp import LacpBond, LacpState, Lacpdu, PortInfo, Transmit, Update, decode_frame, encode_frame
from ryu_lag.lacp.pdu import NULL_PORT_INFO

End = tuple["LacpBond | OvsLikePartner", int]  # a bond (or scripted partner) and one of its member ports


@dataclass
class Wire:
    a: End
    b: End
    up: bool = True
    silent: bool = False  # carrier up, frames lost
    cut_from: End | None = None  # carrier up, frames sent by this end lost (a one-way failure)


@dataclass
class Lab:
    """Bonds wired together; ``run`` advances the clock and delivers PDUs."""

    wires: list[Wire] = field(default_factory=list)
    now: float = 0.0
    step: float = 0.01
    sent: list[tuple[float, LacpBond, int]] = field(default_factory=list)
    pdus: list[tuple[float, LacpBond, int, Lacpdu]] = field(default_factory=list)  # as ``sent``, with the PDU

    def connect(self, a: End, b: End) -> Wire:
        wire = Wire(a, b)
        self.wires.append(wire)
        for bond, port in (a, b):
            self._deliver(bond, bond.set_link(port, True, self.now))
        return wire

    def set_carrier(self, wire: Wire, up: bool) -> None:
        wire.up = up
        for bond, port in (wire.a, wire.b):
            self._deliver(bond, bond.set_link(port, up, self.now))

    def bonds(self) -> list[LacpBond]:
        seen: dict[int, LacpBond] = {}
        for wire in self.wires:
            for bond, _ in (wire.a, wire.b):
                seen[id(bond)] = bond
        return list(seen.values())

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + self.step, 6)
            for bond in self.bonds():
                self._deliver(bond, bond.tick(self.now))

    def _peer(self, bond: LacpBond, port: int) -> tuple[Wire, End] | None:
        for wire in self.wires:
            if wire.a == (bond, port):
                return wire, wire.b
            if wire.b == (bond, port):
                return wire, wire.a
        return None

    def _deliver(self, bond: LacpBond, update) -> None:
        """Send ``update``'s PDUs, and those their arrival makes, in the order sent (no wire reorders)."""
        queue = collections.deque([(bond, update)])
        while queue:
            sender, pending = queue.popleft()
            for tx in pending.transmit:
                self.sent.append((self.now, sender, tx.port))
                self.pdus.append((self.now, sender, tx.port, tx.pdu))
                found = self._peer(sender, tx.port)
                if found is None:
                    continue
                wire, (peer, peer_port) = found
                if wire.up and not wire.silent and wire.cut_from != (sender, tx.port):
                    frame = encode_frame("02:00:00:00:00:01", tx.pdu)
                    queue.append((peer, peer.receive_frame(peer_port, frame, self.now)))


_UP = LacpState.SYNCHRONIZATION | LacpState.COLLECTING | LacpState.DISTRIBUTING


@dataclass
class _OvsMember:
    port: int
    link_up: bool = False
    partner: PortInfo | None = None  # the actor info of the last PDU heard (ours)
    ntt_actor: PortInfo | None = None  # what that PDU said about this side
    next_tx: float = math.inf
    synced_at: float | None = None  # when it first recorded the partner's Sync (Open vSwitch's may_enable)


class OvsLikePartner:
    """A scripted partner that speaks LACP the way Open vSwitch's lib/lacp.c does, simplified.

    - A member is attached, and says Sync+Collecting+Distributing, as soon as it has heard
      an aggregatable partner: it does not wait for the partner's Sync (but it would only
      take frames once ``synced_at`` is set).
    - It transmits on its periodic timer (1 s towards a fast partner, 30 s towards a slow
      one) and at once when the partner's view of it is stale (a PDU whose partner
      information differs from its actor information), but not when only the partner's
      state changed -- unless ``prompt``, which answers every change of the partner.
    - ``reflects_sync=False``: the partner information it sends never shows Sync.
    - No expiry: tests of expiry silence the wire and watch the other side.

    It has the three event methods of :class:`LacpBond` that :class:`Lab` calls. Change
    ``system``, ``system_priority`` or ``key`` to re-key it in place: it keeps its members'
    records and states, and sends the new identity at its next tick.
    """

    def __init__(
        self,
        system: str,
        key: int,
        ports,
        *,
        system_priority: int = 32768,
        prompt: bool = False,
        reflects_sync: bool = True,
    ) -> None:
        self.system, self.key, self.system_priority = system, key, system_priority
        self.prompt, self.reflects_sync = prompt, reflects_sync
        self.members = {port: _OvsMember(port) for port in ports}

    def actor(self, port: int) -> PortInfo:
        member = self.members[port]
        state = LacpState.ACTIVITY | LacpState.TIMEOUT | LacpState.AGGREGATION
        if member.partner is None:
            state |= LacpState.DEFAULTED
        elif member.partner.state & LacpState.AGGREGATION:
            state |= _UP
        return PortInfo(self.system_priority, self.system, self.key, 1, port, state)

    def set_link(self, port: int, up: bool, now: float) -> Update:
        member = self.members[port]
        member.link_up = up
        member.partner = member.ntt_actor = member.synced_at = None
        member.next_tx = now if up else math.inf
        return self._run(member, now)

    def receive_frame(self, port: int, frame: bytes, now: float) -> Update:
        member = self.members[port]
        if not member.link_up:
            return Update()
        _, pdu = decode_frame(frame)
        changed = pdu.actor != member.partner
        member.partner, member.ntt_actor = pdu.actor, pdu.partner
        if pdu.actor.state & LacpState.SYNCHRONIZATION:
            if member.synced_at is None:
                member.synced_at = now
        else:
            member.synced_at = None
        return self._run(member, now, force=self.prompt and changed)

    def tick(self, now: float) -> Update:
        update = Update()
        for member in self.members.values():
            update.extend(self._run(member, now))
        return update

    def _run(self, member: _OvsMember, now: float, force: bool = False) -> Update:
        if not member.link_up:
            return Update()
        actor = self.actor(member.port)
        if not (force or now >= member.next_tx or (member.partner is not None and member.ntt_actor != actor)):
            return Update()
        fast = member.partner is None or member.partner.state & LacpState.TIMEOUT
        member.next_tx = now + (1.0 if fast else 30.0)
        member.ntt_actor = actor
        partner = member.partner or NULL_PORT_INFO
        if not self.reflects_sync:
            partner = dataclasses.replace(partner, state=partner.state & ~LacpState.SYNCHRONIZATION)
        return Update(transmit=[Transmit(member.port, Lacpdu(actor, partner))])


@dataclass
class _EchoMember:
    port: int
    link_up: bool = False
    heard: PortInfo | None = None  # the actor info of the last PDU heard (ours), never expired
    next_tx: float = math.inf


class EchoingPartner:
    """A scripted partner that echoes what it last heard of us and never expires it, as Faucet was
    measured doing.

    It answers every LACPDU it hears at once and sends its own every ``period`` seconds; it
    says Sync+Collecting+Distributing once it has heard an aggregatable partner. Cut our
    direction (``Wire.cut_from``) and it keeps echoing our last state as it heard it.
    """

    def __init__(self, system: str, key: int, ports, *, period: float = 5.0) -> None:
        self.system, self.key, self.period = system, key, period
        self.members = {port: _EchoMember(port) for port in ports}

    def actor(self, port: int) -> PortInfo:
        heard = self.members[port].heard
        state = LacpState.ACTIVITY | LacpState.TIMEOUT | LacpState.AGGREGATION
        if heard is None:
            state |= LacpState.DEFAULTED
        elif heard.state & LacpState.AGGREGATION:
            state |= _UP
        return PortInfo(32768, self.system, self.key, 1, port, state)

    def set_link(self, port: int, up: bool, now: float) -> Update:
        member = self.members[port]
        member.link_up = up
        member.next_tx = now if up else math.inf
        return self._run(member, now)

    def receive_frame(self, port: int, frame: bytes, now: float) -> Update:
        member = self.members[port]
        if not member.link_up:
            return Update()
        member.heard = decode_frame(frame)[1].actor
        return self._run(member, now, answer=True)

    def tick(self, now: float) -> Update:
        update = Update()
        for member in self.members.values():
            update.extend(self._run(member, now))
        return update

    def _run(self, member: _EchoMember, now: float, answer: bool = False) -> Update:
        if not member.link_up or not (answer or now >= member.next_tx):
            return Update()
        if now >= member.next_tx:
            member.next_tx = now + self.period
        pdu = Lacpdu(self.actor(member.port), member.heard or NULL_PORT_INFO)
        return Update(transmit=[Transmit(member.port, pdu)])
