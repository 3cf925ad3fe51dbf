"""A LagSwitch driving a fake switch, with the controller's loop: punts are learned from, removals handed back."""

from __future__ import annotations

from ryu_lag.openflow import ETH_TYPE_SLOW, SLOW_PROTOCOLS_MAC, Message, Table
from ryu_lag.switching import LagSwitch
from tests.unit.fakeoftable import FakeOFTable, ForwardResult

BCAST = "ff:ff:ff:ff:ff:ff"
PARTNER = "02:00:00:00:00:99"


class SwitchRig:
    """``lag`` deciding, ``table`` forwarding; the test file's rig sets both up."""

    lag: LagSwitch
    table: FakeOFTable

    def apply(self, msgs: list[Message]) -> list[Message]:
        """Apply messages, then hand the switch's flow-removed notifications to the logic."""
        self.table.apply(msgs)
        for removed in self.table.take_removed():
            if removed.table == Table.ETH_SRC:
                self.apply(self.lag.flow_removed(removed.match.metadata, removed.match.eth_src))
        return msgs

    def send(self, in_port: int, src: str, dst: str = BCAST) -> ForwardResult:
        """A data frame arrives; a punt is learned from."""
        result = self.table.forward(in_port, src, dst)
        if result.controller:
            self.apply(self.lag.packet_in(in_port, src, dst))
        return result

    def lacpdu(self, in_port: int) -> ForwardResult:
        return self.table.forward(in_port, PARTNER, SLOW_PROTOCOLS_MAC, ETH_TYPE_SLOW)
