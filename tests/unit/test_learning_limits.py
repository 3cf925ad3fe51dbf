"""Learning under a flood of source MACs, against the fake OpenFlow switch: every logical port
punts unknown sources through its own learn meter, and the learned-MAC table is bounded
(past ``max_macs`` learning pauses and new sources flood, counted)."""

from __future__ import annotations

import pytest

from ryu_lag.openflow import OFPP_LOCAL, FlowMod, Match, MeterCommand, MeterMod, Output, Table
from ryu_lag.switching import (
    BOND_GROUP_MAX,
    BOND_GROUP_MIN,
    COOKIE,
    DEFAULT_MAX_MACS,
    OFPP_CONTROLLER,
    TABLE_FULL,
    Bond,
    LagSwitch,
    bfd_meter,
    bond_logical,
    is_our_group,
    is_our_meter,
    lacp_meter,
    learn_meter,
)

from tests.unit.fakeoftable import FakeOFTable
from tests.unit.switch_rig import BCAST, SwitchRig

BOND = BOND_GROUP_MIN
BOND_LP = bond_logical(BOND)
PORTS = (1, 2, 3, 4, 5)


def mac(n: int) -> str:
    return "02:00:" + ":".join(f"{b:02x}" for b in n.to_bytes(4, "big"))


class Rig(SwitchRig):
    """A LagSwitch on a fake switch; punts are learned from, removals handed back."""

    def __init__(self, meters: bool = True, max_macs: int = DEFAULT_MAX_MACS, learn_meter_pps: int = 100) -> None:
        self.lag = LagSwitch(learn_meter_pps=learn_meter_pps, max_macs=max_macs)
        self.table = FakeOFTable(live_ports=PORTS)
        self.meters = meters
        self.apply(self.lag.resume([*PORTS, OFPP_LOCAL], meters, [], None))

    def bond(self) -> None:
        """Ports 1 and 2 a bond, both collecting and distributing."""
        self.apply(self.lag.add_bond(BOND, [1, 2]))
        for port in (1, 2):
            self.apply(self.lag.set_member(BOND, port, collecting=True, distributing=True))


def test_learn_meter_ids_are_ours_and_never_collide_with_lacp_meters():
    bonds = {learn_meter(bond_logical(g)) for g in range(BOND_GROUP_MIN, BOND_GROUP_MAX + 1)}
    plain = {learn_meter(p) for p in range(1, 0x10000)}
    lacp = {lacp_meter(p) for p in range(1, 0x10000)}
    bfd = {bfd_meter(p) for p in range(1, 0x10000)}
    assert len(bonds) == BOND_GROUP_MAX - BOND_GROUP_MIN + 1 and len(plain) == 0xFFFF
    assert not bonds & plain and not (bonds | plain) & lacp and not (bonds | plain | lacp) & bfd
    assert all(is_our_meter(m) for m in bonds | plain | bfd)  # type: ignore[arg-type]
    assert all(m < 0xFFFF0000 for m in bonds | plain | bfd)  # type: ignore[operator]  # below OFPM_MAX
    assert not is_our_meter(1) and not is_our_meter(0x4C450000) and not is_our_group(0x4C420001)
    assert learn_meter(0x10000) is None  # such a port punts unmetered


def test_every_logical_port_punts_unknown_sources_through_its_own_learn_meter():
    rig = Rig()
    rig.bond()
    for port, logical in ((3, 3), (4, 4), (1, BOND_LP), (2, BOND_LP)):
        result = rig.table.forward(port, mac(port), BCAST)
        assert result.controller and result.meter == learn_meter(logical)
    assert set(rig.table.meters) == {learn_meter(3), learn_meter(4), learn_meter(5), learn_meter(BOND_LP),
                                     lacp_meter(1), lacp_meter(2)}
    assert {(m.rate_pps, m.burst) for i, m in rig.table.meters.items() if i not in (lacp_meter(1), lacp_meter(2))} \
        == {(100, 100)}
    # the table-miss itself punts nothing: a source is punted only through its port's meter
    (miss,) = [e for e in rig.table.table(Table.ETH_SRC) if e.match == Match()]
    assert miss.mod.actions == () and miss.mod.goto == Table.ETH_DST


def test_known_sources_are_not_metered_and_unknown_ones_are_forwarded_too():
    rig = Rig()
    first = rig.send(3, mac(3))
    assert first.controller and first.outputs == {1, 2, 4, 5}  # punted and flooded in the same pass
    again = rig.table.forward(3, mac(3), BCAST)
    assert not again.controller and again.meter is None and again.outputs == {1, 2, 4, 5}
    assert rig.table.forward(4, mac(4), mac(3)).outputs == {3}  # unknown source, known destination: unicast


def test_membership_moves_the_meters_and_a_removed_bond_takes_its_own():
    rig = Rig()
    rig.bond()
    assert learn_meter(1) not in rig.table.meters and learn_meter(2) not in rig.table.meters
    msgs = rig.apply(rig.lag.remove_bond(BOND))
    assert set(rig.table.meters) == {learn_meter(p) for p in PORTS}
    kinds = [type(m).__name__ for m in msgs]  # meters go only once no flow uses them
    last_flow = max(i for i, k in enumerate(kinds) if k == "FlowMod")
    assert all(i > last_flow for i, m in enumerate(msgs)
               if isinstance(m, MeterMod) and m.command is MeterCommand.DELETE)
    assert rig.table.forward(1, mac(1), BCAST).meter == learn_meter(1)


def test_without_meters_punts_are_unmetered():
    rig = Rig(meters=False)
    rig.bond()
    assert rig.table.meters == {}
    result = rig.table.forward(3, mac(3), BCAST)
    assert result.controller and result.meter is None


def test_resume_turns_the_old_single_punt_into_per_port_punts_and_then_sends_nothing():
    rig = Rig()
    rig.bond()
    rig.send(3, mac(3))
    fresh = rig.table.content()
    # the pipeline before per-port learn meters: one unmetered punt in the table-miss
    old = FlowMod(Table.ETH_SRC, 0, Match(), actions=(Output(OFPP_CONTROLLER),), goto=Table.ETH_DST, cookie=COOKIE)
    rig.table.apply([old])
    for entry in [e for e in rig.table.flows if e.table == Table.ETH_SRC and e.priority == 1]:
        rig.table.flows.remove(entry)
    for meter_id in [m for m in rig.table.meters if m != lacp_meter(1) and m != lacp_meter(2)]:
        del rig.table.meters[meter_id]
    bond = Bond(BOND, frozenset({1, 2}), frozenset({1, 2}), frozenset({1, 2}))
    again = LagSwitch()
    rig.table.apply(again.resume([*PORTS, OFPP_LOCAL], True, [bond], rig.table.observed()))
    assert rig.table.content() == fresh
    assert again.macs() == {mac(3): 3}
    assert LagSwitch().resume([*PORTS, OFPP_LOCAL], True, [bond], rig.table.observed()) == []


def test_past_max_macs_learning_pauses_new_sources_flood_and_are_counted():
    rig = Rig(max_macs=10)
    for n in range(10):
        rig.send(3 + n % 3, mac(n))
    assert len(rig.lag.macs()) == 10 and rig.lag.learning
    refused = rig.send(3, mac(100))
    assert refused.controller and rig.lag.learn_dropped[TABLE_FULL] == 1
    assert mac(100) not in rig.lag.macs() and not rig.lag.learning
    # paused: unknown sources are forwarded, unmetered, and not punted; known ones as before
    after = rig.send(3, mac(101), mac(1))
    assert not after.controller and after.meter is None and after.outputs == {4}
    assert rig.send(5, mac(102)).outputs == {1, 2, 3, 4}
    assert len(rig.lag.macs()) == 10
    # a learned MAC still moves at the cap
    rig.apply(rig.lag.packet_in(5, mac(0), BCAST))
    assert rig.lag.macs()[mac(0)] == 5


def test_learning_resumes_once_ageing_brings_the_table_back_to_nine_tenths():
    rig = Rig(max_macs=10)
    for n in range(10):
        rig.send(3, mac(n))
    rig.send(4, mac(100))
    assert not rig.lag.learning
    rig.table.advance(200)
    for n in range(9):
        rig.table.forward(3, mac(n), BCAST)  # keeps nine alive
    rig.table.advance(150)
    rig.apply([])
    assert len(rig.lag.macs()) == 9 and rig.lag.learning
    result = rig.send(4, mac(100))
    assert result.controller and result.meter == learn_meter(4) and rig.lag.macs()[mac(100)] == 4


def test_flush_resumes_learning():
    rig = Rig(max_macs=2)
    for n in range(3):
        rig.send(3, mac(n))
    assert not rig.lag.learning
    rig.apply(rig.lag.flush())
    assert rig.lag.learning and rig.send(4, mac(7)).controller


def test_resume_keeps_at_most_max_macs_and_deletes_the_other_learned_flows():
    big = Rig(max_macs=20)
    for n in range(20):
        big.send(3, mac(n))
    small = LagSwitch(max_macs=5)
    big.apply(small.resume([*PORTS, OFPP_LOCAL], True, [], big.table.observed()))
    assert len(small.macs()) == 5 and not small.learning
    assert len([e for e in big.table.table(Table.ETH_SRC) if e.match.eth_src]) == 5


@pytest.mark.parametrize("bad", [{"learn_meter_pps": 0}, {"max_macs": 0}])
def test_constructor_refuses_bad_limits(bad):
    with pytest.raises(ValueError):
        LagSwitch(**bad)
