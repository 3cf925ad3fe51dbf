"""A tiny discrete-time harness: LACP bonds joined by wires, with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from ryu_lag.lacp import LacpBond, encode_frame

End = tuple[LacpBond, int]  # a bond and one of its member ports


@dataclass
class Wire:
    a: End
    b: End
    up: bool = True
    silent: bool = False  # carrier up, frames lost


@dataclass
class Lab:
    """Bonds wired together; ``run`` advances the clock and delivers PDUs."""

    wires: list[Wire] = field(default_factory=list)
    now: float = 0.0
    step: float = 0.01
    sent: list[tuple[float, LacpBond, int]] = field(default_factory=list)

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
        for tx in update.transmit:
            self.sent.append((self.now, bond, tx.port))
            found = self._peer(bond, tx.port)
            if found is None:
                continue
            wire, (peer, peer_port) = found
            if wire.up and not wire.silent:
                frame = encode_frame("02:00:00:00:00:01", tx.pdu)
                self._deliver(peer, peer.receive_frame(peer_port, frame, self.now))
