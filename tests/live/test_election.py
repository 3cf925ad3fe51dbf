"""The election against a real etcd on loopback (``tests.etcdlab``): claims race, leases expire,
releases compare, instances are listed, a cut-off master's switches are claimed within 2 s."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests import etcdlab
from ryu_lag import election as election_module
from ryu_lag.election import (
    INSTANCES,
    LEASE_TTL,
    MASTERS,
    STEP_INTERVAL,
    Election,
    EtcdUnavailable,
    LeaseExpired,
    MasterWatch,
)
from ryu_lag.mastership import HANDOVER_WARM_UP, Instance, Master

pytestmark = pytest.mark.skipif(etcdlab.etcd_binary() is None, reason="etcd is not installed (scripts/setup.sh)")

TAKEOVER_LIMIT = 2.0  # the bound: a cut-off master's switches have another master within 2 s
FAST_ELECTION_MS = 500  # etcd grants at least 1.5 x its election timeout: 500 ms lets a lease be 1 s


@pytest.fixture(scope="module")
def etcd() -> Iterator[etcdlab.EtcdCluster]:
    """One etcd member, run with an election timeout that allows leases of LEASE_TTL."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(etcdlab, "ELECTION_MS", FAST_ELECTION_MS)
        with etcdlab.etcd_cluster(1) as cluster:
            yield cluster


@pytest.fixture
def endpoints(etcd: etcdlab.EtcdCluster) -> Iterator[list[tuple[str, int]]]:
    etcd.wipe()
    yield etcd.endpoints


@pytest.fixture
def elections(endpoints: list[tuple[str, int]]) -> Iterator[list[Election]]:
    """Closed (leases revoked) after the test."""
    made: list[Election] = []
    yield made
    for each in made:
        each.close()


def make(elections: list[Election], endpoints: list[tuple[str, int]], instance_id: str) -> Election:
    made = Election(endpoints, instance_id, url=f"http://127.0.0.1:8080/{instance_id}")
    elections.append(made)
    return made


def put_raw(etcd: etcdlab.EtcdCluster, key: str, value: str) -> None:
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    reply = requests.post(etcd.members[0].client_url + "/v3/kv/put", json={"key": b64(key), "value": b64(value)},
                          timeout=5)
    reply.raise_for_status()


def test_the_lease_granted_is_one_second(elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a = make(elections, endpoints, "a")
    a.register([1])
    assert a.lease_ttl == LEASE_TTL == 1


def test_two_instances_racing_for_one_switch_exactly_one_wins(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    for each in (a, b):
        each.register(range(1, 21))
    for dpid in range(1, 21):
        start = threading.Barrier(2)
        results: dict[str, Master | None] = {}

        def race(contender: Election) -> None:
            start.wait()
            results[contender.instance_id] = contender.claim(dpid)

        threads = [threading.Thread(target=race, args=(each,)) for each in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        winners = [m for m in results.values() if m is not None]
        assert len(results) == 2 and len(winners) == 1, (dpid, results)
        assert a.read().masters[dpid] == winners[0]


def test_a_claim_retried_by_its_winner_is_recognised(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    """A write that timed out on one member and is retried on the next finds its own first attempt."""
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    a.register([7])
    b.register([7])
    first = a.claim(7)
    assert first is not None and first.instance == "a"
    assert a.claim(7) == first
    assert b.claim(7) is None


def test_generations_grow_with_every_new_master(elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    a.register([5])
    b.register([5])
    held = a.claim(5)
    assert held is not None
    taken = b.take_over(5, held)
    assert taken is not None and taken.generation > held.generation
    assert a.take_over(5, held) is None  # compare-and-swap on the master read: stale now
    back = a.take_over(5, taken)
    assert back is not None and back.generation > taken.generation
    assert a.read().masters[5] == back


def test_release_deletes_only_our_key_at_the_generation_we_hold(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    a.register([3])
    b.register([3])
    held = a.claim(3)
    assert held is not None
    assert not a.release(3, Master("a", held.generation - 1))  # not the generation we hold: kept
    assert a.read().masters[3] == held
    assert b.release(3, held) is True  # "not ours" for b, and the key stays a's
    assert a.read().masters[3] == held
    taken = b.take_over(3, held)
    assert taken is not None
    assert a.release(3, held) is True  # not ours any more: nothing deleted
    assert a.read().masters[3] == taken
    assert b.release(3, taken) is True
    assert 3 not in a.read().masters


def test_instances_are_listed_with_their_switches_and_leave_with_their_lease(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    a.register([1, 2])
    b.register([])
    view = a.read()
    assert view.instances == {"a": Instance("a", frozenset({1, 2}), "http://127.0.0.1:8080/a"),
                              "b": Instance("b", frozenset(), "http://127.0.0.1:8080/b")}
    b.publish([2, 3])
    assert a.read().instances["b"].dpids == {2, 3}
    assert a.claim(1) is not None
    a.close()  # planned stop: instance key and masterships go at once
    view = b.read()
    assert set(view.instances) == {"b"} and view.masters == {}


def test_keys_that_are_not_ours_are_skipped(etcd: etcdlab.EtcdCluster, elections: list[Election],
                                            endpoints: list[tuple[str, int]]) -> None:
    a = make(elections, endpoints, "a")
    a.register([1])
    assert a.claim(1) is not None
    for key, value in [(election_module.INSTANCES + "bad id", '{"url": "", "dpids": []}'),
                       (election_module.INSTANCES + "x", "not json"),
                       (election_module.INSTANCES + "y", '{"url": "", "dpids": ["1"]}'),
                       (election_module.INSTANCES + "z", '{"url": 5, "dpids": [1]}'),
                       (MASTERS + "zz", "a"),
                       (MASTERS + "000000000000000A", "a"),
                       (MASTERS + "0000000000000002", "no/such id"),
                       (MASTERS + "0000000000000003", "")]:
        put_raw(etcd, key, value)
    view = a.read()
    assert set(view.instances) == {"a"}
    assert set(view.masters) == {1}


def test_three_instances_spread_ten_switches(elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    since = time.monotonic()
    connected = dict.fromkeys(range(1, 11), since)
    trio = [make(elections, endpoints, name) for name in ("a", "b", "c")]
    for each in trio:
        each.register(connected)  # all three are known before anyone claims
    for _ in range(3):
        for each in trio:
            result = each.step(time.monotonic(), connected)
            assert result.reachable
    loads = sorted(sum(1 for m in result.view.masters.values() if m.instance == e.instance_id) for e in trio)
    assert loads == [3, 3, 4]
    assert set(result.view.masters) == set(range(1, 11))


def test_a_new_instance_takes_its_share_after_warming_up(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    start = time.monotonic()
    first = a.step(start, dict.fromkeys(range(1, 11), start))
    assert set(first.won) == set(range(1, 11))
    b_connected = dict.fromkeys(range(1, 11), start)
    early = b.step(start + 0.1, b_connected)
    assert early.won == {} and early.plan is not None and early.plan.takeovers == ()
    a_plan = a.step(start + 0.2, dict.fromkeys(range(1, 11), start)).plan
    assert a_plan is not None and [d for d, _ in a_plan.handing_over] == [6, 7, 8, 9, 10]
    late = b.step(start + HANDOVER_WARM_UP, b_connected)
    assert set(late.won) == {6, 7, 8, 9, 10}
    assert all(late.won[d].generation > first.won[d].generation for d in late.won)


def test_a_cut_off_master_loses_its_switch_within_two_seconds(
        elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    a, b = make(elections, endpoints, "a"), make(elections, endpoints, "b")
    since = time.monotonic()
    connected = {9: since}
    won = a.step(time.monotonic(), connected).won
    assert set(won) == {9}
    b.step(time.monotonic(), connected)
    assert a.step(time.monotonic(), connected).reachable  # a's last renewal: then it goes silent
    silent = time.monotonic()
    result = b.step(time.monotonic(), connected)
    while 9 not in result.won and time.monotonic() - silent < TAKEOVER_LIMIT + 3:
        time.sleep(STEP_INTERVAL)
        result = b.step(time.monotonic(), connected)
    took = time.monotonic() - silent
    assert result.won.get(9) is not None, "b never claimed the switch"
    assert result.won[9].generation > won[9].generation
    assert took <= TAKEOVER_LIMIT, f"took {took:.2f} s"
    back = a.step(time.monotonic(), connected)  # a reaches etcd again: its lease is gone, a new one taken
    assert back.reachable and back.lease_lost
    assert back.view.masters[9] == result.won[9] and back.won == {}
    assert set(back.view.instances) == {"a", "b"}


def test_a_write_on_an_expired_lease_says_so(etcd: etcdlab.EtcdCluster, elections: list[Election],
                                             endpoints: list[tuple[str, int]]) -> None:
    a = make(elections, endpoints, "a")
    a.register([1])
    assert a.claim(1) is not None
    reply = requests.post(etcd.members[0].client_url + "/v3/kv/lease/revoke", json={"ID": a.lease_id}, timeout=5)
    reply.raise_for_status()  # as if it expired between a renewal and the next write
    with pytest.raises(LeaseExpired):
        a.publish([1, 2])
    with pytest.raises(LeaseExpired):
        a.claim(2)
    result = a.step(time.monotonic(), {1: time.monotonic()})  # the renewal finds it gone: a new lease
    assert result.reachable and result.lease_lost
    assert set(result.won) == {1} and result.view.instances["a"].dpids == {1}


def test_without_etcd_the_step_reports_it_and_keeps_the_last_view() -> None:
    with etcdlab.etcd_cluster(1) as own:
        a = Election(own.endpoints, "a")
        connected = {4: time.monotonic()}
        seen = a.step(time.monotonic(), connected)
        assert seen.reachable and set(seen.won) == {4}
        own.members[0].kill()
        began = time.monotonic()
        result = a.step(time.monotonic(), connected)
        assert time.monotonic() - began < 1.0
        assert not result.reachable and result.won == {} and result.plan is None
        assert result.view == seen.view and result.view.masters[4] == seen.won[4]  # keep roles: a stays master
        with pytest.raises(EtcdUnavailable):
            a.read()
        a.close()  # cannot revoke: says so, does not raise


def test_a_dead_member_is_passed_over(elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    dead = (etcdlab.LOOPBACK, etcdlab.free_ports(1)[0])
    a = Election([dead, *endpoints], "a")
    elections.append(a)
    result = a.step(time.monotonic(), {2: time.monotonic()})
    assert result.reachable and set(result.won) == {2}


def test_bad_instance_ids_are_refused(endpoints: list[tuple[str, int]]) -> None:
    for bad in ("", "a/b", "x" * 65):
        with pytest.raises(ValueError, match="instance id"):
            Election(endpoints, bad)
    with pytest.raises(ValueError, match="endpoint"):
        Election([], "a")
    with pytest.raises(ValueError, match="TTL"):
        Election(endpoints, "a", ttl=0)


def test_losing_one_etcd_member_changes_no_master() -> None:
    """Three members; the leader, which both instances talk to first, is killed: the steps go on
    through the other members, and every switch keeps its master and generation."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(etcdlab, "ELECTION_MS", FAST_ELECTION_MS)
        with etcdlab.etcd_cluster(3) as trio:
            leader = trio.leader()
            ordered = [(etcdlab.LOOPBACK, leader.client_port)]
            ordered += [e for e in trio.endpoints if e[1] != leader.client_port]
            pair = [Election(ordered, name) for name in ("a", "b")]
            since = time.monotonic()
            connected = dict.fromkeys(range(1, 5), since)
            for each in pair:
                each.register(connected)
            for _ in range(2):
                for each in pair:
                    result = each.step(time.monotonic(), connected)
            before = dict(result.view.masters)
            assert len(before) == 4
            leader.kill()
            unreachable = 0
            end = time.monotonic() + 3 * LEASE_TTL + 1
            while time.monotonic() < end:
                for each in pair:
                    result = each.step(time.monotonic(), connected)
                    unreachable += not result.reachable
                    assert not result.lease_lost and result.won == {}
                time.sleep(STEP_INTERVAL)
            assert result.reachable and dict(result.view.masters) == before
            assert unreachable <= 4  # at most the steps during the new leader's election
            for each in pair:
                each.close()


def test_the_master_watch_wakes_the_loop_when_a_master_key_changes(
        etcd: etcdlab.EtcdCluster, elections: list[Election], endpoints: list[tuple[str, int]]) -> None:
    woken: list[float] = []
    watch = MasterWatch(endpoints, lambda: woken.append(time.monotonic()))
    watch.start()
    try:
        time.sleep(0.5)  # the stream is up
        a = make(elections, endpoints, "a")
        a.step(time.monotonic(), {7: 0.0})  # claims switch 7
        claimed = time.monotonic()
        deadline = claimed + 2.0
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert woken and woken[0] - claimed < 0.5, woken
        woken.clear()
        put_raw(etcd, INSTANCES + "zz", "not ours")  # another prefix: no wake
        time.sleep(0.3)
        assert woken == []
        a.close()  # the lease revoked: the master key goes with it
        revoked = time.monotonic()
        while not woken and time.monotonic() < revoked + 2.0:
            time.sleep(0.01)
        assert woken and woken[0] - revoked < 0.5, woken
    finally:
        watch.stop()
