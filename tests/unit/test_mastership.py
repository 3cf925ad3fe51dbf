"""Per-switch mastership decisions, driven through a small in-memory etcd with etcd's rules:
one revision counter for every write, create-if-absent, compare-and-swap, compare-and-delete,
and keys bound to an instance's lease that vanish with it."""

from __future__ import annotations

import pathlib
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

import ryu_lag.mastership
from ryu_lag.mastership import (
    HANDOVER_WARM_UP,
    Instance,
    Master,
    Plan,
    assign,
    fair_share,
    plan,
    Roles,
    role_request,
    
    valid_instance_id,
)
from ryu_lag.openflow import Role, RoleRequest
from tests.unit.imports import imported_modules

SWITCHES = range(1, 11)
T0 = 1000.0  # when every connection in these tests came up, unless a test says otherwise
SETTLED = T0 + HANDOVER_WARM_UP  # every connection warm


@dataclass
class FakeEtcd:
    """The election keys as etcd keeps them: every successful write takes the next revision."""

    revision: int = 1
    instances: dict[str, Instance] = field(default_factory=dict)
    masters: dict[int, Master] = field(default_factory=dict)
    history: dict[int, list[Master]] = field(default_factory=dict)
    connected_since: dict[str, dict[int, float]] = field(default_factory=dict)

    def join(self, instance_id: str, dpids: range | set[int], since: float = T0) -> None:
        self.instances[instance_id] = Instance(instance_id, frozenset(dpids))
        self.connected_since[instance_id] = dict.fromkeys(dpids, since)
        self.revision += 1

    def die(self, instance_id: str) -> None:
        """Its lease expires: its instance key and every master key it holds vanish at once."""
        del self.instances[instance_id]
        del self.connected_since[instance_id]
        for dpid in [d for d, m in self.masters.items() if m.instance == instance_id]:
            del self.masters[dpid]
        self.revision += 1

    def disconnect(self, instance_id: str, dpid: int) -> None:
        """The instance loses its connection to a switch and publishes that."""
        del self.connected_since[instance_id][dpid]
        old = self.instances[instance_id]
        self.instances[instance_id] = Instance(instance_id, old.dpids - {dpid})
        self.revision += 1

    def plan_for(self, instance_id: str, now: float) -> Plan:
        return plan(instance_id, now, self.instances, self.masters, self.connected_since[instance_id])

    def apply(self, instance_id: str, decided: Plan) -> list[int]:
        """Run a plan's writes with etcd's compare semantics; the dpids whose master changed."""
        changed = []
        for dpid, held in decided.releases:
            if self.masters.get(dpid) == held:
                del self.masters[dpid]
                self.revision += 1
        for dpid in decided.claims:
            if dpid not in self.masters:
                self._write(dpid, instance_id)
                changed.append(dpid)
        for dpid, expected in decided.takeovers:
            if self.masters.get(dpid) == expected:
                self._write(dpid, instance_id)
                changed.append(dpid)
        return changed

    def _write(self, dpid: int, instance_id: str) -> None:
        self.revision += 1
        master = Master(instance_id, self.revision)
        self.masters[dpid] = master
        self.history.setdefault(dpid, []).append(master)

    def settle(self, now: float, rounds: int = 20) -> Counter[int]:
        """Every instance plans and writes in turn (each reading what the previous one wrote)
        until a whole round writes nothing; how many times each switch changed master."""
        moves: Counter[int] = Counter()
        for _ in range(rounds):
            moved = []
            for instance_id in sorted(self.instances):
                moved += self.apply(instance_id, self.plan_for(instance_id, now))
            if not moved:
                return moves
            moves.update(moved)
        raise AssertionError(f"no fixed point after {rounds} rounds: {self.masters}")

    def loads(self) -> dict[str, int]:
        counts = Counter(m.instance for m in self.masters.values())
        return {i: counts[i] for i in self.instances}


def cluster(*instance_ids: str) -> FakeEtcd:
    etcd = FakeEtcd()
    for instance_id in instance_ids:
        etcd.join(instance_id, SWITCHES)
    return etcd


def assert_settled(etcd: FakeEtcd) -> None:
    """Every switch has a live master connected to it; nobody above its share; nothing more to do."""
    share = fair_share(len(SWITCHES), len(etcd.instances))
    assert set(etcd.masters) == set(SWITCHES)
    for dpid, master in etcd.masters.items():
        assert dpid in etcd.instances[master.instance].dpids
    assert max(etcd.loads().values()) <= share
    for instance_id in etcd.instances:
        assert etcd.plan_for(instance_id, SETTLED + 100) == Plan(share)


def assert_generations_grow(etcd: FakeEtcd) -> None:
    for dpid, masters in etcd.history.items():
        generations = [m.generation for m in masters]
        assert generations == sorted(set(generations)), f"switch {dpid}: {generations}"


# ---- spread ------------------------------------------------------------------------------
def test_fair_share_is_switches_over_instances_rounded_up() -> None:
    assert [fair_share(10, n) for n in (1, 2, 3, 4, 10, 11)] == [10, 5, 4, 3, 1, 1]
    assert fair_share(0, 3) == 0
    assert fair_share(5, 0) == 0


def test_ten_switches_over_one_two_three_instances_started_together() -> None:
    for instance_ids, loads in [(("a",), [10]), (("a", "b"), [5, 5]), (("a", "b", "c"), [4, 3, 3])]:
        etcd = cluster(*instance_ids)
        moves = etcd.settle(T0)  # free switches are claimed at once: no warm-up needed
        assert sorted(etcd.loads().values(), reverse=True) == loads
        assert set(moves.values()) == {1}  # each switch got its master once
        assert_settled(etcd)
        assert_generations_grow(etcd)


def test_instances_started_one_after_another_each_take_their_share() -> None:
    etcd = cluster("a")
    etcd.settle(T0)
    assert etcd.loads() == {"a": 10}
    later = T0 + 60
    for newcomer, loads in (("b", [5, 5]), ("c", [4, 4, 2])):
        etcd.join(newcomer, SWITCHES, since=later)
        assert etcd.settle(later + HANDOVER_WARM_UP / 2) == Counter()  # still warming up: nothing moves
        moves = etcd.settle(later + HANDOVER_WARM_UP)
        assert set(moves.values()) == {1}, "a switch moved twice in one join"
        assert all(etcd.masters[d].instance == newcomer for d in moves)
        assert sorted(etcd.loads().values(), reverse=True) == loads
        assert_settled(etcd)
        later += 60
    assert_generations_grow(etcd)


def test_two_instances_joining_one_that_holds_everything() -> None:
    etcd = cluster("a")
    etcd.settle(T0)
    etcd.join("b", SWITCHES, since=T0 + 10)
    etcd.join("c", SWITCHES, since=T0 + 10)
    moves = etcd.settle(T0 + 10 + HANDOVER_WARM_UP)
    assert set(moves.values()) == {1}
    assert etcd.loads() == {"a": 4, "b": 3, "c": 3}
    assert_settled(etcd)


def test_the_overloaded_master_knows_what_it_hands_over_and_keeps_serving_it() -> None:
    etcd = cluster("a")
    etcd.settle(T0)
    etcd.join("b", SWITCHES, since=T0 + 10)
    before = etcd.plan_for("a", T0 + 10)
    assert before.handing_over == tuple((d, "b") for d in (6, 7, 8, 9, 10))
    assert before.releases == () and before.claims == () and before.takeovers == ()
    taker = etcd.plan_for("b", T0 + 10 + HANDOVER_WARM_UP)
    assert [(d, m.instance) for d, m in taker.takeovers] == [(d, "a") for d in (6, 7, 8, 9, 10)]
    assert all(m == etcd.masters[d] for d, m in taker.takeovers)  # compare-and-swap on what it read


def test_a_switch_only_one_instance_reaches_goes_to_it_even_above_its_share() -> None:
    etcd = FakeEtcd()
    etcd.join("a", {1, 2, 3})
    etcd.join("b", {1, 2})
    etcd.settle(T0)
    assert etcd.masters[3].instance == "a"
    assert max(etcd.loads().values()) == 2  # share 2: a has 3 and one of 1, 2; b the other
    assert etcd.plan_for("a", SETTLED) == Plan(2) == etcd.plan_for("b", SETTLED)


def test_a_switch_nobody_is_connected_to_is_never_claimed() -> None:
    etcd = FakeEtcd()
    etcd.join("a", {1, 2})
    etcd.join("b", {2})
    etcd.settle(T0)
    assert set(etcd.masters) == {1, 2}
    assert etcd.plan_for("b", SETTLED).share == 1


def test_our_published_connection_is_not_enough_to_claim_a_switch() -> None:
    """Our record in etcd may lag behind: a switch we are not connected to now is never claimed."""
    etcd = cluster("a")
    assert etcd.plan_for("a", T0).claims == tuple(SWITCHES)
    del etcd.connected_since["a"][4]
    assert 4 not in etcd.plan_for("a", T0).claims


# ---- failures ----------------------------------------------------------------------------
def test_an_instance_dying_leaves_its_switches_to_the_others_at_once() -> None:
    etcd = cluster("a", "b", "c")
    etcd.settle(T0)
    survivors_before = {d: m for d, m in etcd.masters.items() if m.instance != "c"}
    orphans = {d for d, m in etcd.masters.items() if m.instance == "c"}
    etcd.die("c")
    moves = etcd.settle(T0 + 0.1)  # free switches: no warm-up
    assert set(moves) == orphans
    assert {d: etcd.masters[d] for d in survivors_before} == survivors_before  # nothing else moved
    assert etcd.loads() == {"a": 5, "b": 5}
    assert_settled(etcd)
    assert_generations_grow(etcd)


def test_every_instance_but_one_dying() -> None:
    etcd = cluster("a", "b", "c")
    etcd.settle(T0)
    etcd.die("a")
    etcd.die("b")
    etcd.settle(T0 + 1)
    assert etcd.loads() == {"c": 10}
    assert_settled(etcd)


def test_a_master_that_loses_its_switch_releases_it_and_another_takes_it_at_once() -> None:
    etcd = cluster("a", "b")
    etcd.settle(T0)
    dpid = next(d for d, m in etcd.masters.items() if m.instance == "a")
    held = etcd.masters[dpid]
    etcd.disconnect("a", dpid)
    assert etcd.plan_for("a", T0 + 1).releases == ((dpid, held),)
    assert etcd.plan_for("b", T0 + 1).takeovers == ((dpid, held),)  # not serving it: no warm-up
    etcd.settle(T0 + 1)
    assert etcd.masters[dpid].instance == "b"
    assert etcd.masters[dpid].generation > held.generation


def test_a_key_naming_an_instance_that_is_not_live_is_taken_over_not_created() -> None:
    etcd = cluster("a")
    etcd.masters[3] = Master("ghost", 2)
    decided = etcd.plan_for("a", T0)
    assert 3 not in decided.claims
    assert decided.takeovers == ((3, Master("ghost", 2)),)


def test_a_settled_cluster_plans_nothing_and_only_the_real_master_is_master() -> None:
    etcd = cluster("a", "b", "c")
    etcd.settle(T0)
    assert_settled(etcd)
    for dpid, master in etcd.masters.items():
        for instance_id in etcd.instances:
            wanted = role_request(instance_id, master)
            assert wanted == RoleRequest(Role.MASTER if instance_id == master.instance else Role.SLAVE,
                                         master.generation)


# ---- properties over arbitrary facts -----------------------------------------------------
INSTANCE_IDS = ["a", "b", "c", "d"]


@st.composite
def facts(draw: st.DrawFn) -> tuple[dict[str, Instance], dict[int, Master], dict[str, dict[int, float]]]:
    live = draw(st.lists(st.sampled_from(INSTANCE_IDS), min_size=1, max_size=4, unique=True))
    dpids = st.frozensets(st.integers(1, 12), max_size=12)
    instances = {i: Instance(i, draw(dpids)) for i in live}
    holders = st.sampled_from(INSTANCE_IDS + ["ghost"])
    masters = draw(st.dictionaries(st.integers(1, 12), st.builds(Master, holders, st.integers(1, 10_000))))
    since = {i: {d: draw(st.sampled_from([T0, SETTLED])) for d in inst.dpids} for i, inst in instances.items()}
    return instances, masters, since


@settings(max_examples=400, deadline=None)
@given(facts())
def test_no_switch_ever_has_two_claimants(case: tuple[dict[str, Instance], dict[int, Master],
                                                   dict[str, dict[int, float]]]) -> None:
    instances, masters, since = case
    target = assign(instances, masters)
    claimants: Counter[int] = Counter()
    for instance_id in instances:
        decided = plan(instance_id, SETTLED, instances, masters, since[instance_id])
        for dpid in decided.claims:
            assert dpid not in masters
        for dpid, expected in decided.takeovers:
            assert masters[dpid] == expected and expected.instance != instance_id
        for dpid, held in decided.releases:
            assert held == masters[dpid] and held.instance == instance_id
        mine = list(decided.claims) + [d for d, _ in decided.takeovers]
        assert all(target[d] == instance_id and d in instances[instance_id].dpids for d in mine)
        claimants.update(mine)
    assert all(count == 1 for count in claimants.values()), claimants


@settings(max_examples=400, deadline=None)
@given(facts())
def test_every_connected_switch_gets_exactly_one_target_within_share_where_possible(
        case: tuple[dict[str, Instance], dict[int, Master], dict[str, dict[int, float]]]) -> None:
    instances, masters, _ = case
    target = assign(instances, masters)
    counted = {d for i in instances.values() for d in i.dpids}
    assert set(target) == counted
    assert all(d in instances[i].dpids for d, i in target.items())
    share = fair_share(len(counted), len(instances))
    loads = Counter(target.values())
    for instance_id, load in loads.items():
        if load > share:  # above share only where none of its switches could go to someone with room
            for dpid in (d for d, i in target.items() if i == instance_id):
                assert all(loads[other] >= share for other in instances if dpid in instances[other].dpids)
    # a live master connected to its switch loses it only while above its share, down to its share
    for dpid, master in masters.items():
        if master.instance in instances and dpid in instances[master.instance].dpids:
            if target[dpid] != master.instance:
                assert loads[master.instance] >= share and loads[target[dpid]] <= share


@settings(max_examples=200, deadline=None)
@given(facts())
def test_any_start_settles_with_growing_generations(
        case: tuple[dict[str, Instance], dict[int, Master], dict[str, dict[int, float]]]) -> None:
    instances, masters, since = case
    etcd = FakeEtcd(revision=10_001, instances=dict(instances), masters=dict(masters), connected_since=since)
    etcd.history = {d: [m] for d, m in masters.items()}
    etcd.settle(SETTLED)
    assert_generations_grow(etcd)
    counted = {d for i in instances.values() for d in i.dpids}
    assert set(etcd.masters) >= counted
    for dpid in counted:
        assert dpid in etcd.instances[etcd.masters[dpid].instance].dpids


# ---- roles -------------------------------------------------------------------------------
def test_role_request_for_our_switch_another_s_and_a_free_one() -> None:
    assert role_request("a", Master("a", 17)) == RoleRequest(Role.MASTER, 17)
    assert role_request("a", Master("b", 18)) == RoleRequest(Role.SLAVE, 18)
    assert role_request("a", None) is None


def test_roles_ask_once_per_change_and_keep_the_role_when_the_keys_are_gone() -> None:
    roles = Roles("a")
    assert roles.connected(1) is None  # nothing read yet: stay EQUAL, send nothing
    roles.connected(2)
    roles.connected(3)
    requests, stop = roles.read({1: Master("a", 5), 2: Master("b", 6)})
    assert requests == {1: RoleRequest(Role.MASTER, 5), 2: RoleRequest(Role.SLAVE, 6)} and stop == []
    assert roles.read({1: Master("a", 5), 2: Master("b", 6)}) == ({}, [])
    requests, _ = roles.read({1: Master("b", 9), 2: Master("a", 10)})  # handed over both ways
    assert requests == {1: RoleRequest(Role.SLAVE, 9), 2: RoleRequest(Role.MASTER, 10)}
    assert roles.connected(2) == RoleRequest(Role.MASTER, 10)  # a new connection asks at once
    assert roles.read({}) == ({}, [])  # keys gone (etcd down, lease lost): keep the roles


def test_we_act_only_once_the_switch_accepts_our_generation() -> None:
    roles = Roles("a")
    roles.connected(1)
    roles.read({1: Master("a", 5)})
    assert roles.replied(1, Role.MASTER, 4) is None  # an answer to an older claim: not acting on it
    assert roles.acting() == []
    assert roles.replied(1, Role.MASTER, 5) is True
    assert roles.replied(1, Role.MASTER, 5) is None  # already acting
    assert roles.acting() == [1]
    assert roles.replied(1, Role.SLAVE, 7) is False  # the switch says another master came
    assert roles.acting() == []


def test_we_stop_acting_at_the_first_sign_of_another_master() -> None:
    roles = Roles("a")
    for dpid in (1, 2, 3):
        roles.connected(dpid)
    roles.read({1: Master("a", 5), 2: Master("a", 6), 3: Master("a", 7)})
    for dpid, generation in ((1, 5), (2, 6), (3, 7)):
        roles.replied(dpid, Role.MASTER, generation)
    requests, stop = roles.read({1: Master("b", 8), 2: Master("a", 6), 3: Master("a", 7)})
    assert stop == [1]  # etcd names b: before the switch says so
    assert requests == {1: RoleRequest(Role.SLAVE, 8)}
    assert roles.refused(2) is True  # IS_SLAVE, a stale role request, a role status
    assert roles.refused(2) is False  # every further refusal is old news
    assert roles.acting() == [3]
    requests, _ = roles.read({1: Master("b", 8), 2: Master("b", 9), 3: Master("a", 7)})
    assert requests == {2: RoleRequest(Role.SLAVE, 9)}
    assert roles.lease_lost() == [3]
    assert roles.acting() == []
    assert roles.read({1: Master("b", 8), 2: Master("b", 9), 3: Master("a", 11)})[0] == {3: RoleRequest(Role.MASTER, 11)}


def test_instance_ids() -> None:
    assert valid_instance_id("ryu-1.dc_2")
    for bad in ("", "-x", "a/b", "a b", "x" * 65, "é"):
        assert not valid_instance_id(bad)


def test_decisions_are_stdlib_only() -> None:
    for name in imported_modules(pathlib.Path(ryu_lag.mastership.__file__)):
        assert name.split(".")[0] in {"__future__", "re", "collections", "dataclasses"} or name == "ryu_lag.openflow", name
