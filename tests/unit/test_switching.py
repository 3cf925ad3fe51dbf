"""The LAG-aware learning switch driven against a fake OpenFlow switch: behaviour, not bytes.

The usual rig: bond group 1 = ports 1 and 2 (both collecting and distributing), plain
ports 3, 4, 5. Frames the switch punts are handed to ``packet_in``, and every flow-removed
the switch would send (timeouts and our own deletes alike) to ``flow_removed``.
"""

from __future__ import annotations

import random

import pytest

from ryu_lag.openflow import (
    OFPP_LOCAL,
    FlowCommand,
    FlowMod,
    GroupCommand,
    GroupMod,
    Match,
    Message,
    MeterCommand,
    MeterMod,
    Table,
)
from ryu_lag.switching import (
    BOND_BASE,
    BOND_GROUP_MAX,
    BOND_GROUP_MIN,
    COOKIE,
    COOKIE_MASK,
    FLOOD_ALL,
    FLOOD_PLAIN,
    OUR_IDS,
    lacp_meter,
    learn_meter,
    LagSwitch,
    bond_group,
    bond_logical,
    flood_from,
    is_bond,
    is_our_group,
    is_our_meter,
)

from tests.unit.fakeoftable import FakeOFTable, FlowEntry
from tests.unit.switch_rig import BCAST, SwitchRig

MAC_AGE = 300
H1, H2, H3, H4, H5 = (f"02:00:00:00:00:0{n}" for n in range(1, 6))
G = BOND_GROUP_MIN - 1
"""``G + n`` is the n-th bond's group id."""
BOND = G + 1
BOND_LP = bond_logical(BOND)
PORTS = (1, 2, 3, 4, 5)


def sources(n: int = 24) -> list[str]:
    """Distinct unicast MACs, enough for the SELECT hash to use every bucket."""
    return [f"02:00:00:00:10:{i:02x}" for i in range(n)]


class Rig(SwitchRig):
    """A LagSwitch wired to a fake switch, with a controller loop for punts and removals."""

    def __init__(self, ports=PORTS, meters: bool = True) -> None:
        self.lag = LagSwitch(mac_age=MAC_AGE)
        self.table = FakeOFTable(live_ports=ports)
        self.apply(self.lag.resume([*ports, OFPP_LOCAL], meters, [], None))

    def age(self, seconds: float) -> None:
        self.table.advance(seconds)
        self.apply([])

    def learned(self) -> list[FlowEntry]:
        """The per-MAC flows in ETH_SRC and ETH_DST."""
        return [
            e for e in self.table.flows
            if e.table != Table.INGRESS and (e.match.eth_src is not None or e.match.eth_dst is not None)
        ]

    def learned_src(self) -> set[tuple[int, str]]:
        return {(e.match.metadata, e.match.eth_src) for e in self.table.table(Table.ETH_SRC) if e.match.eth_src}

    def learned_dst_macs(self) -> set[str]:
        return {e.match.eth_dst for e in self.table.table(Table.ETH_DST) if e.match.eth_dst}


@pytest.fixture
def plain() -> Rig:
    return Rig()


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.apply(rig.lag.add_bond(BOND, [1, 2]))
    rig.apply(rig.lag.set_member(BOND, 1, collecting=True, distributing=True))
    rig.apply(rig.lag.set_member(BOND, 2, collecting=True, distributing=True))
    return rig


def deletes(msgs: list[Message]) -> list[FlowMod]:
    return [m for m in msgs if isinstance(m, FlowMod) and m.command is not FlowCommand.ADD]


# -- logical ids -------------------------------------------------------------------------


def test_our_group_and_meter_ids_are_one_block_that_small_ids_never_reach():
    bond_ids = range(BOND_GROUP_MIN, BOND_GROUP_MAX + 1)
    flood_ids = {FLOOD_PLAIN, FLOOD_ALL, *(flood_from(g) for g in bond_ids)}
    assert len(flood_ids) == len(bond_ids) + 2 and not flood_ids & set(bond_ids)
    assert all(is_our_group(g) for g in (*bond_ids, *flood_ids))
    assert all(g <= 0xFFFFFF00 for g in flood_ids | set(bond_ids))  # OFPG_MAX
    meters = {lacp_meter(p) for p in range(1, 0x10000)}
    assert len(meters) == 0xFFFF and all(is_our_meter(m) and m <= 0xFFFF0000 for m in meters)  # OFPM_MAX
    assert not any(is_our_group(g) or is_our_meter(g) for g in (*range(0, 0x10000), 0xFFFFFFFC, 0xFFFFFFFF))


def test_logical_ids_tell_bonds_from_ports(rig):
    assert BOND_LP == BOND_BASE | BOND and BOND_LP != BOND
    assert is_bond(BOND_LP) and not is_bond(1) and not is_bond(0xFFFFFF00)
    assert bond_group(BOND_LP) == BOND
    with pytest.raises(ValueError):
        bond_group(3)
    assert rig.lag.logical_port(1) == rig.lag.logical_port(2) == BOND_LP
    assert rig.lag.logical_port(3) == 3
    assert rig.lag.logical_port(9) is None
    assert rig.lag.plain_ports() == {3, 4, 5}
    bond = rig.lag.bonds()[BOND]
    assert bond.members == bond.collecting == bond.distributing == {1, 2}
    assert bond.logical == BOND_LP


# -- flooding ----------------------------------------------------------------------------


def test_broadcast_from_plain_port_leaves_every_other_port_and_the_bond_once(rig):
    members_used = set()
    for src in sources():
        out = rig.send(3, src).outputs
        assert out - {1, 2} == {4, 5}
        assert len(out & {1, 2}) == 1
        members_used |= out & {1, 2}
    assert members_used == {1, 2}  # the bond's group chooses, not a fixed member


def test_broadcast_from_a_member_never_returns_into_the_bond(rig):
    for port in (1, 2):
        for src in sources(8):
            assert rig.send(port, src).outputs == {3, 4, 5}


def test_unknown_unicast_is_flooded_like_broadcast(rig):
    out = rig.send(3, H3, H4).outputs
    assert out - {1, 2} == {4, 5} and len(out & {1, 2}) == 1


def test_local_and_unknown_ports_carry_nothing(rig):
    assert OFPP_LOCAL not in rig.lag.plain_ports()
    assert rig.apply(rig.lag.port_added(OFPP_LOCAL)) == []
    assert rig.table.forward(OFPP_LOCAL, H1, BCAST).dropped
    assert rig.table.forward(9, H1, BCAST).dropped
    assert rig.lag.packet_in(9, H1, BCAST) == []
    assert all(OFPP_LOCAL not in rig.send(3, src).outputs for src in sources(4))


# -- flood groups ------------------------------------------------------------------------


@pytest.fixture
def bonds3() -> Rig:
    """Ports 1..10: bond 1 = 1, 2 (both distributing), bond 2 = 3, 4 (only 3 distributing),
    bond 3 = 5, 6 (collecting, nothing distributing); plain ports 7..10."""
    rig = Rig(ports=range(1, 11))
    for group_id, members in ((G + 1, (1, 2)), (G + 2, (3, 4)), (G + 3, (5, 6))):
        rig.apply(rig.lag.add_bond(group_id, members))
        for port in members:
            rig.apply(rig.lag.set_member(group_id, port, collecting=True, distributing=port in (1, 2, 3)))
    return rig


def test_flood_from_a_plain_port_reaches_each_plain_port_and_distributing_bond_once(bonds3):
    members_used = set()
    for src in sources():
        copies = sorted(bonds3.send(7, src).copies)
        assert len(copies) == len(set(copies))  # no port gets two copies
        assert set(copies) - {1, 2} == {3, 8, 9, 10}
        assert len(set(copies) & {1, 2}) == 1
        members_used |= set(copies) & {1, 2}
    assert members_used == {1, 2}


def test_flood_from_a_bond_never_returns_into_it(bonds3):
    for src in sources():
        for port in (1, 2):
            assert sorted(bonds3.send(port, src).copies) == [3, 7, 8, 9, 10]
        for port in (3, 4, 5, 6):  # bond 2, and bond 3 which collects but does not distribute
            copies = sorted(bonds3.send(port, src).copies)
            assert len(copies) == len(set(copies)) and len(set(copies) & {1, 2}) == 1
            assert set(copies) - {1, 2} == {7, 8, 9, 10} | ({3} if port in (5, 6) else set())


def test_a_bonds_first_distributing_member_makes_it_reachable_by_floods(bonds3):
    src = sources(1)[0]
    assert not bonds3.send(7, src).outputs & {5, 6}
    msgs = bonds3.apply(bonds3.lag.set_member(G + 3, 5, collecting=True, distributing=True))
    assert deletes(msgs) == []
    # its own group, FLOOD_ALL and the other bonds' flood groups start chaining it
    assert {m.group_id for m in msgs if isinstance(m, GroupMod)} == {
        G + 3, FLOOD_ALL, flood_from(G + 1), flood_from(G + 2)}
    for src in sources():
        assert bonds3.send(7, src).outputs & {5, 6} == {5}
        assert bonds3.send(1, src).outputs & {5, 6} == {5}
        assert bonds3.send(3, src).outputs & {5, 6} == {5}
        assert not bonds3.send(6, src).outputs & {5, 6}  # from the bond itself: never back
    bonds3.apply(bonds3.lag.set_member(G + 3, 5, collecting=True, distributing=False))
    assert all(not bonds3.send(p, src).outputs & {5, 6} for p in (7, 1, 3) for src in sources())


def test_bond_add_and_remove_on_a_big_switch_send_a_handful_of_messages():
    """200 ports, 40 distributing bonds: a new bond's add and remove do not touch the floods
    of the other 158 logical ports (the per-port flood flows used to change, ~160 flows)."""
    rig = Rig(ports=range(1, 201), meters=False)
    for n in range(1, 41):
        rig.apply(rig.lag.add_bond(G + n, (2 * n - 1, 2 * n)))
        rig.apply(rig.lag.set_member(G + n, 2 * n - 1, collecting=True, distributing=True))
    src = sources(1)[0]
    flood_from_100 = {p for p in range(81, 201) if p != 100} | {2 * g - 1 for g in range(1, 41)}
    assert rig.send(100, src).outputs == flood_from_100

    added = rig.apply(rig.lag.add_bond(G + 41, (81, 82)))
    assert len(added) <= 16
    assert rig.send(100, src).outputs == flood_from_100 - {81, 82}

    first = rig.apply(rig.lag.set_member(G + 41, 81, collecting=True, distributing=True))
    assert len(first) <= 40 + 3  # O(bonds) only now: every other bond's flood group chains it
    assert rig.send(100, src).outputs == flood_from_100 - {82}
    assert 81 in rig.send(1, src).outputs and not rig.send(81, src).outputs & {81, 82}

    removed = rig.apply(rig.lag.remove_bond(G + 41))
    assert len(removed) <= 16 + 40
    assert rig.send(100, src).outputs == flood_from_100

    added = rig.apply(rig.lag.add_bond(G + 41, (81, 82)))
    removed = rig.apply(rig.lag.remove_bond(G + 41))  # never distributed: no flood group but its own
    assert len(added) <= 16 and len(removed) <= 16
    assert rig.send(100, src).outputs == flood_from_100


@pytest.mark.parametrize("seed", range(6))
def test_incremental_changes_end_where_a_fresh_start_would(seed):
    """Random bond, member, member-set and port events applied one by one leave the switch
    exactly as a fresh start with the final configuration does (and the fake switch accepted
    every step). The fresh start is both ways: bond by bond, and one resume."""
    rng = random.Random(seed)
    ports = range(1, 13)
    rig = Rig(ports=ports)
    present = set(ports)
    for _ in range(150):
        bonds = rig.lag.bonds()
        members = {p for b in bonds.values() for p in b.members}
        event = rng.choice(["add", "add", "remove", "member", "member", "member", "port", "members"])
        if event == "add" and (free := sorted(set(ports) - members)):
            group_id = next(g for g in range(G + 1, G + 20) if g not in bonds)
            rig.apply(rig.lag.add_bond(group_id, rng.sample(free, min(len(free), rng.randint(1, 3)))))
        elif event == "remove" and bonds:
            rig.apply(rig.lag.remove_bond(rng.choice(sorted(bonds))))
        elif event == "member" and bonds:
            group_id = rng.choice(sorted(bonds))
            port = rng.choice(sorted(bonds[group_id].members))
            rig.apply(rig.lag.set_member(group_id, port, rng.random() < 0.7, rng.random() < 0.6))
        elif event == "members" and bonds:
            group_id = rng.choice(sorted(bonds))
            free = sorted(set(ports) - members)
            keep = [p for p in sorted(bonds[group_id].members) if rng.random() < 0.6]
            rig.apply(rig.lag.set_members(group_id, keep + rng.sample(free, min(len(free), rng.randint(0 if keep else 1, 2)))
                                          or sorted(bonds[group_id].members)))
        elif event == "port":
            port = rng.choice(list(ports))
            if port in present:
                present.discard(port)
                rig.apply(rig.lag.port_removed(port))
            else:
                present.add(port)
                rig.apply(rig.lag.port_added(port))
        rig.send(rng.choice(list(ports)), rng.choice(sources(4)))  # learning goes on meanwhile

    for port in sorted(rig.lag.leaving_ports()):  # the bond-by-bond start has no leaving ports
        rig.apply(rig.lag.release(port))
    fresh = Rig(ports=sorted(present))
    for group_id, bond in sorted(rig.lag.bonds().items()):
        fresh.apply(fresh.lag.add_bond(group_id, bond.members))
        for port in sorted(bond.members):
            fresh.apply(fresh.lag.set_member(group_id, port, port in bond.collecting, port in bond.distributing))
    assert _static(rig) == _static(fresh)
    assert rig.lag.plain_ports() == fresh.lag.plain_ports()
    assert {p: rig.lag.logical_port(p) for p in ports} == {p: fresh.lag.logical_port(p) for p in ports}


def _static(rig: Rig) -> dict:
    """The static flows, all groups and meters the fake switch holds."""
    flows = {(e.table, e.priority, e.match): e.mod for e in rig.table.flows if e.cookie == COOKIE}
    return {"flows": flows, "groups": dict(rig.table.groups), "meters": dict(rig.table.meters)}


@pytest.mark.parametrize("seed", range(6))
def test_member_sets_changed_in_place_end_where_one_resume_would(seed):
    """Random member-set changes and releases of a live switch, leaving ports included, end
    where one resume with the final bonds and leaving ports would."""
    rng = random.Random(seed)
    ports = range(1, 13)
    rig = Rig(ports=ports)
    for n, members in enumerate(((1, 2), (3, 4, 5), (6,)), start=1):
        rig.apply(rig.lag.add_bond(G + n, members))
        for port in members:
            rig.apply(rig.lag.set_member(G + n, port, True, rng.random() < 0.7))
    for _ in range(60):
        bonds = rig.lag.bonds()
        free = sorted(set(ports) - {p for b in bonds.values() for p in b.members})
        event = rng.choice(["members", "members", "member", "release"])
        group_id = rng.choice(sorted(bonds))
        if event == "members":
            keep = [p for p in sorted(bonds[group_id].members) if rng.random() < 0.6]
            new = keep + rng.sample(free, min(len(free), rng.randint(0 if keep else 1, 2)))
            rig.apply(rig.lag.set_members(group_id, new or sorted(bonds[group_id].members)))
        elif event == "member":
            port = rng.choice(sorted(bonds[group_id].members))
            rig.apply(rig.lag.set_member(group_id, port, rng.random() < 0.7, rng.random() < 0.6))
        elif rig.lag.leaving_ports():
            rig.apply(rig.lag.release(rng.choice(sorted(rig.lag.leaving_ports()))))
        rig.send(rng.choice(list(ports)), rng.choice(sources(4)))
    resumed = Rig(ports=[])
    resumed.apply(resumed.lag.resume(ports, True, rig.lag.bonds().values(), resumed.table.observed(),
                                     rig.lag.leaving_ports()))
    assert _static(rig) == _static(resumed)
    assert rig.lag.plain_ports() == resumed.lag.plain_ports()
    assert rig.lag.leaving_ports() == resumed.lag.leaving_ports()
    assert {p: rig.lag.logical_port(p) for p in ports} == {p: resumed.lag.logical_port(p) for p in ports}


# -- learning ----------------------------------------------------------------------------


def test_learned_destinations_are_unicast(rig):
    rig.send(3, H3)
    rig.send(1, H1)
    assert rig.lag.macs() == {H3: 3, H1: BOND_LP}
    assert rig.send(4, H4, H3).outputs == {3}
    for src in sources():
        out = rig.send(4, src, H1).outputs
        assert len(out) == 1 and out <= {1, 2}
    assert not rig.send(3, H3, H4).controller  # known source: not punted again


def test_mac_seen_on_another_member_of_its_bond_does_not_flap(rig):
    rig.send(1, H1)
    rig.send(3, H3)
    learned = {id(e) for e in rig.learned()}
    result = rig.send(2, H1, H3)
    assert not result.controller and result.outputs == {3}
    # The punt can still come (a race, or flows queued before the learn): no flap.
    msgs = rig.apply(rig.lag.packet_in(2, H1, H3))
    assert deletes(msgs) == []
    assert all(m.table == Table.ETH_SRC for m in msgs)
    assert rig.lag.macs() == {H1: BOND_LP, H3: 3}
    assert {id(e) for e in rig.learned() if e.match.eth_src != H1} <= learned
    assert rig.send(4, H4, H3).outputs == {3}
    assert len(rig.send(4, H4, H1).outputs & {1, 2}) == 1


def test_mac_known_on_same_port_whose_source_flow_vanished_is_reinstalled(plain):
    plain.send(3, H3)
    plain.table.flows = [e for e in plain.table.flows if e.match.eth_src != H3]  # lost silently
    assert plain.send(3, H3, H4).controller
    assert plain.lag.macs() == {H3: 3}
    assert (3, H3) in plain.learned_src()
    assert not plain.send(3, H3, H4).controller


def test_host_move_between_plain_ports(plain):
    plain.send(3, H1)
    plain.send(5, H5)
    plain.send(4, H1)  # moved; the old flows' removals reach flow_removed and are ignored
    assert plain.lag.macs() == {H1: 4, H5: 5}
    assert plain.send(5, H5, H1).outputs == {4}
    assert plain.learned_src() == {(4, H1), (5, H5)}
    assert plain.lag.flow_removed(3, H1) == []
    assert plain.lag.macs()[H1] == 4


def test_host_move_from_bond_to_plain_port_drops_hairpin_rule(rig):
    rig.send(1, H1)
    rig.send(3, H1)
    assert rig.lag.macs() == {H1: 3}
    rig.send(2, H2)
    assert rig.send(2, H2, H1).outputs == {3}


def test_multicast_and_broadcast_sources_are_not_learned(plain):
    for src in ("01:00:5e:00:00:01", BCAST, "00:00:00:00:00:00"):
        assert plain.lag.packet_in(3, src, BCAST) == []
    assert plain.lag.macs() == {}


def test_macs_are_normalised(plain):
    plain.apply(plain.lag.packet_in(3, "02-00-00-00-0A-0B", BCAST))
    assert plain.lag.macs() == {"02:00:00:00:0a:0b": 3}
    assert plain.send(4, H4, "02:00:00:00:0a:0b").outputs == {3}
    plain.apply(plain.lag.flow_removed(3, "02:00:00:00:0A:0B"))
    assert "02:00:00:00:0a:0b" not in plain.lag.macs()
    with pytest.raises(ValueError):
        plain.lag.packet_in(3, "02:00:00:00:0a", BCAST)


# -- ageing and flushing -----------------------------------------------------------------


def test_aged_out_mac_is_forgotten_and_flooded_again(plain):
    plain.send(3, H3)
    plain.send(4, H4)
    plain.age(MAC_AGE - 10)
    plain.send(4, H4, H5)
    plain.age(20)
    assert plain.lag.macs() == {H4: 4}
    assert H3 not in plain.learned_dst_macs()
    assert plain.send(4, H4, H3).outputs == {1, 2, 3, 5}


def test_host_that_only_sends_stays_unicast(plain):
    plain.send(3, H3)
    for _ in range(10):  # H3 keeps talking for ten MAC ages; nobody sends to it
        plain.age(MAC_AGE - 10)
        plain.send(3, H3, H4)
    assert plain.lag.macs() == {H3: 3}
    assert plain.send(4, H4, H3).outputs == {3}


def test_flush_one_bond_removes_only_its_macs(rig):
    rig.send(1, H1)
    rig.send(3, H3)
    rig.send(4, H4)
    rig.apply(rig.lag.flush(BOND_LP))
    assert rig.lag.macs() == {H3: 3, H4: 4}
    assert rig.learned_src() == {(3, H3), (4, H4)}
    assert rig.learned_dst_macs() == {H3, H4}  # H1's forward and hairpin flows are gone
    assert rig.send(5, H5, H3).outputs == {3}
    rig.apply(rig.lag.flush(3))
    assert rig.lag.macs() == {H4: 4, H5: 5}
    assert rig.learned_dst_macs() == {H4, H5}


def test_flush_all_removes_learned_flows_and_nothing_else(rig):
    static = {id(e) for e in rig.table.flows}
    rig.send(1, H1)
    rig.send(3, H3)
    rig.apply(rig.lag.flush())
    assert rig.lag.macs() == {}
    assert rig.learned() == []
    assert {id(e) for e in rig.table.flows} == static
    out = rig.send(3, H3, H1).outputs
    assert out - {1, 2} == {4, 5} and len(out & {1, 2}) == 1


# -- bond members ------------------------------------------------------------------------


def test_unicast_to_bond_uses_only_distributing_members(rig):
    rig.send(1, H1)
    rig.apply(rig.lag.set_member(BOND, 2, collecting=True, distributing=False))
    assert {p for src in sources() for p in rig.send(3, src, H1).outputs} == {1}
    assert {p for src in sources() for p in rig.send(3, src).outputs} == {1, 4, 5}
    rig.apply(rig.lag.set_member(BOND, 1, collecting=True, distributing=False))
    assert all(rig.send(3, src, H1).dropped for src in sources())
    assert all(rig.send(3, src).outputs == {4, 5} for src in sources())
    assert rig.lag.macs()[H1] == BOND_LP
    rig.apply(rig.lag.set_member(BOND, 2, collecting=True, distributing=True))
    assert {p for src in sources() for p in rig.send(3, src, H1).outputs} == {2}
    assert all(rig.send(3, src).outputs == {2, 4, 5} for src in sources())


def test_member_not_collecting_drops_data_but_still_passes_lacp(rig):
    rig.apply(rig.lag.set_member(BOND, 2, collecting=False, distributing=False))
    assert rig.table.forward(2, H1, BCAST).dropped
    assert rig.lag.packet_in(2, H1, BCAST) == []
    for port in (1, 2):
        result = rig.lacpdu(port)
        assert result.controller and result.outputs == set() and result.meter == lacp_meter(port)
    assert rig.send(1, H1).outputs == {3, 4, 5}


def test_lacpdu_from_a_plain_port_is_dropped_not_flooded(rig):
    assert rig.lacpdu(3).dropped
    assert rig.lacpdu(OFPP_LOCAL).dropped


def test_hairpin_to_a_mac_on_the_same_bond_is_dropped(rig):
    rig.send(1, H1)
    for src in sources():
        rig.send(2, src)  # learn the sources first so the test frames are not punted
        assert rig.send(2, src, H1).dropped
        assert rig.send(1, src, H1).dropped
    assert rig.send(3, H3, H1).outputs <= {1, 2}


def test_set_member_never_touches_learned_macs(rig):
    rig.send(1, H1)
    rig.send(3, H3)
    learned = {id(e) for e in rig.learned()}
    macs = rig.lag.macs()

    msgs = rig.apply(rig.lag.set_member(BOND, 2, collecting=True, distributing=False))
    assert msgs == [GroupMod(GroupCommand.MODIFY, BOND, (1,))]
    msgs = rig.apply(rig.lag.set_member(BOND, 2, collecting=False, distributing=False))
    assert len(msgs) == 1 and msgs[0].table == Table.INGRESS and msgs[0].match == Match(in_port=2)
    assert rig.apply(rig.lag.set_member(BOND, 2, collecting=False, distributing=False)) == []

    # The last distributing member goes: the flood group stops chaining the bond, then the group.
    msgs = rig.apply(rig.lag.set_member(BOND, 1, collecting=False, distributing=False))
    assert deletes(msgs) == []
    assert [m.group_id for m in msgs if isinstance(m, GroupMod)] == [FLOOD_ALL, BOND]
    assert [m.match for m in msgs if isinstance(m, FlowMod)] == [Match(in_port=1)]
    rig.apply(rig.lag.set_member(BOND, 1, collecting=True, distributing=True))
    rig.apply(rig.lag.set_member(BOND, 2, collecting=True, distributing=True))

    assert {id(e) for e in rig.learned()} == learned
    assert rig.lag.macs() == macs
    assert rig.send(4, H4, H3).outputs == {3}


# -- bonds and ports come and go ---------------------------------------------------------


def test_add_bond_forgets_macs_of_its_members_and_starts_with_nothing_distributing(plain):
    plain.send(1, H1)
    plain.send(3, H3)
    msgs = plain.apply(plain.lag.add_bond(BOND, [1, 2]))
    assert GroupMod(GroupCommand.ADD, BOND) in msgs
    assert plain.table.select_groups() == {BOND: ()}
    assert plain.lag.macs() == {H3: 3}
    assert plain.learned_dst_macs() == {H3}
    assert plain.lag.plain_ports() == {3, 4, 5}
    assert plain.table.forward(1, H1, BCAST).dropped  # not collecting yet
    assert plain.lacpdu(1).controller
    assert plain.send(3, H3).outputs == {4, 5}  # no member distributes


def test_bond_validation_leaves_state_alone(rig):
    before = rig.lag.bonds()
    with pytest.raises(ValueError):
        rig.lag.add_bond(BOND, [4])
    with pytest.raises(ValueError):
        rig.lag.add_bond(G + 2, [2, 4])
    with pytest.raises(ValueError):
        rig.lag.add_bond(G + 2, [])
    with pytest.raises(ValueError):
        rig.lag.add_bond(G + 2, [OFPP_LOCAL])
    for outside in (2, BOND_GROUP_MIN - 1, BOND_GROUP_MAX + 1):  # another application's ids, our flood ids
        with pytest.raises(ValueError, match="out of range"):
            rig.lag.add_bond(outside, [4])
    with pytest.raises(ValueError):
        rig.lag.set_member(BOND, 3, collecting=True, distributing=True)
    with pytest.raises(ValueError):
        rig.lag.remove_bond(G + 2)
    assert rig.lag.bonds() == before
    assert rig.lag.plain_ports() == {3, 4, 5}


def test_remove_bond_makes_members_plain_ports_again(rig):
    rig.send(1, H1)
    rig.send(3, H3)
    rig.apply(rig.lag.remove_bond(BOND))
    assert set(rig.table.groups) == {FLOOD_PLAIN, FLOOD_ALL}
    assert rig.lag.bonds() == {}
    assert rig.lag.plain_ports() == {1, 2, 3, 4, 5}
    assert rig.lag.macs() == {H3: 3}
    assert rig.send(3, H3, H1).outputs == {1, 2, 4, 5}
    assert rig.send(1, H1).outputs == {2, 3, 4, 5}
    assert rig.lag.macs()[H1] == 1
    assert rig.send(3, H3, H1).outputs == {1}
    assert rig.lacpdu(1).dropped


def test_second_bond_floods_once_through_each(rig):
    rig.apply(rig.lag.add_bond(G + 7, [4, 5]))
    rig.apply(rig.lag.set_member(G + 7, 4, collecting=True, distributing=True))
    rig.apply(rig.lag.set_member(G + 7, 5, collecting=True, distributing=True))
    for src in sources():
        out = rig.send(3, src).outputs
        assert len(out & {1, 2}) == 1 and len(out & {4, 5}) == 1 and len(out) == 2
        assert rig.send(4, src).outputs - {1, 2} == {3}


def test_ports_added_and_removed(plain):
    plain.table.live_ports.add(6)
    plain.apply(plain.lag.port_added(6))
    assert plain.send(3, H3).outputs == {1, 2, 4, 5, 6}
    assert plain.send(6, H5).outputs == {1, 2, 3, 4, 5}
    assert plain.send(3, H3, H5).outputs == {6}
    plain.apply(plain.lag.port_removed(6))
    assert plain.lag.macs() == {H3: 3}
    assert plain.learned_dst_macs() == {H3}
    assert plain.send(3, H3, H5).outputs == {1, 2, 4, 5}
    assert plain.table.forward(6, H5, BCAST).dropped


def test_member_port_added_stays_a_member(rig):
    rig.apply(rig.lag.port_removed(2))
    assert rig.lag.port_added(2) == []
    assert rig.lag.logical_port(2) == BOND_LP
    assert rig.lag.plain_ports() == {3, 4, 5}


def test_removed_member_comes_back_plain_only_if_present(rig):
    rig.apply(rig.lag.port_removed(2))
    rig.apply(rig.lag.remove_bond(BOND))
    assert rig.lag.plain_ports() == {1, 3, 4, 5}
    assert rig.table.forward(2, H1, BCAST).dropped


# -- meters ------------------------------------------------------------------------------


def test_with_meters_each_member_punts_lacp_through_its_own_meter():
    rig = Rig(meters=True)
    assert set(rig.table.meters) == {learn_meter(p) for p in PORTS}  # plain ports punt only to learn
    rig.apply(rig.lag.add_bond(BOND, [1, 2]))
    assert set(rig.table.meters) == {lacp_meter(1), lacp_meter(2), learn_meter(BOND_LP), learn_meter(3),
                                     learn_meter(4), learn_meter(5)} and lacp_meter(1) != lacp_meter(2)
    meter = rig.table.meters[lacp_meter(1)]
    assert meter.rate_pps == rig.lag.lacp_meter_pps and meter.burst >= 3  # LACP may send 3 PDUs at once
    assert rig.lacpdu(1).meter == lacp_meter(1) and rig.lacpdu(2).meter == lacp_meter(2)
    assert rig.send(3, H3).meter == learn_meter(3)  # an unknown source: its port's learn meter
    assert rig.send(3, H3).meter is None  # a known one is not metered
    rig.apply(rig.lag.add_bond(G + 7, [4]))
    assert {m for m in rig.table.meters if m & 0xFFFF0000 == OUR_IDS} == {lacp_meter(1), lacp_meter(2), lacp_meter(4)}
    msgs = rig.lag.remove_bond(BOND)
    rig.apply(msgs)
    assert {m for m in rig.table.meters if m & 0xFFFF0000 == OUR_IDS} == {lacp_meter(4)}
    last_flow = max(i for i, m in enumerate(msgs) if isinstance(m, FlowMod))  # a meter goes only once no flow uses it
    gone = [i for i, m in enumerate(msgs) if isinstance(m, MeterMod) and m.command is MeterCommand.DELETE]
    assert gone and min(gone) > last_flow
    assert rig.lacpdu(1).dropped and rig.lacpdu(4).meter == lacp_meter(4)


def test_member_ports_must_fit_lacp_16_bits():
    rig = Rig(meters=True)
    meters = dict(rig.table.meters)
    with pytest.raises(ValueError, match="not member ports"):
        rig.lag.add_bond(BOND, [1, 0x10000])
    assert rig.lag.bonds() == {} and rig.table.meters == meters


def test_without_meters_nothing_references_one():
    rig = Rig(meters=False)
    rig.apply(rig.lag.add_bond(BOND, [1, 2]))
    assert rig.table.meters == {}
    result = rig.lacpdu(1)
    assert result.controller and result.meter is None


def test_every_flow_carries_our_cookie(rig):
    rig.apply(rig.lag.add_bond(G + 7, [4, 5]))
    rig.apply(rig.lag.set_member(G + 7, 4, collecting=False, distributing=True))
    rig.send(1, H1)
    rig.send(3, H3)
    assert rig.table.flows
    assert all(e.cookie & COOKIE_MASK == COOKIE for e in rig.table.flows)


def test_constructor_validates():
    with pytest.raises(ValueError):
        LagSwitch(mac_age=0)
    with pytest.raises(ValueError):
        LagSwitch(mac_age=70000)
    with pytest.raises(ValueError):
        LagSwitch(lacp_meter_pps=2)  # below the 3 LACPDUs an actor may send in a second
