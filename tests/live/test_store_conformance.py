"""The same store tests against SQLite and a real 3-member etcd cluster on loopback.

Two store objects stand for two controller instances. SQLite allows one owner per file
(its lock), so there the "two instances" are the one object used from two threads.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ryu_lag import etcd_store
from ryu_lag.config import BondConfig
from ryu_lag.etcd_store import EtcdStore
from ryu_lag.store import BondStore
from ryu_lag.stores import BondChange, Store, StoreConflict, open_store
from tests.etcdlab import EtcdCluster, etcd_binary, etcd_cluster

EDGE_DPIDS = [0, 2**63, 2**64 - 1]
RACE_ROUNDS = 20
FEED_WAIT = 10.0  # seconds a change may take to reach a watcher on a noisy VM


def bond(dpid: int = 1, name: str = "bond0", ports: tuple[int, ...] = (1, 2), key: int = 1) -> BondConfig:
    return BondConfig.from_dict(dpid, {"name": name, "ports": list(ports)}, key=key)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd is not installed: run scripts/setup.sh (it installs etcd-server)")
    with etcd_cluster(3) as started:
        yield started


class Backend:
    """Opens stores of one kind; ``peer`` is the store a second controller instance would use."""

    def __init__(self, kind: str, tmp_path: Path, cluster: EtcdCluster | None) -> None:
        self.kind = kind
        self.path = tmp_path / "state.sqlite3"
        self.cluster = cluster
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = BondStore(str(self.path)) if self.kind == "sqlite" else EtcdStore(self.cluster.endpoints)
        self.opened.append(store)
        return store

    def peer(self, store: Store) -> Store:
        return store if self.kind == "sqlite" else self.open()

    def reopen(self, store: Store) -> Store:
        store.close()
        self.opened.remove(store)
        return self.open()

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    cluster = None
    if request.param == "etcd":
        cluster = request.getfixturevalue("cluster")
        cluster.wipe()
    opened = Backend(request.param, tmp_path, cluster)
    yield opened
    opened.close()


@pytest.fixture
def etcd_backend(cluster: EtcdCluster, tmp_path: Path) -> Iterator[Backend]:
    """For what only etcd has: values written by others, retries across members."""
    cluster.wipe()
    opened = Backend("etcd", tmp_path, cluster)
    yield opened
    opened.close()


def changes_until(store: Store, count: int) -> list[BondChange]:
    """``count`` changes from ``store``'s feed, failing after FEED_WAIT; then checks nothing more comes."""
    got: list[BondChange] = []
    deadline = time.monotonic() + FEED_WAIT
    while len(got) < count and time.monotonic() < deadline:
        got += store.poll_changes(timeout=0.2)
    assert len(got) == count, got
    got += store.poll_changes(timeout=0.3)
    return got


def test_create_replace_delete_and_load_after_reopen(backend: Backend) -> None:
    store = backend.open()
    assert store.load().bonds == [] and store.load().switch_revision(7) == 0
    first = store.put_bond(bond(7, "b0"))
    store.put_bond(bond(7, "b1", (3,), key=2))
    store.put_bond(bond(2, "z", (9,)))
    replaced = bond(7, "b0", (1, 2, 5), key=3)
    store.put_bond(replaced)
    store.delete_bond(7, "b1")
    last = store.put_bond(bond(7, "b2", (8,), key=2))
    assert first < last
    store = backend.reopen(store)
    snapshot = store.load()
    assert [(c.dpid, c.name) for c in snapshot.bonds] == [(2, "z"), (7, "b0"), (7, "b2")]  # dpid, then creation
    assert snapshot.bonds[1] == replaced
    assert snapshot.switch_revision(7) == last and snapshot.revision >= last
    assert store.load_all() == snapshot.bonds


@pytest.mark.parametrize("dpid", EDGE_DPIDS, ids=hex)
def test_every_64_bit_dpid_round_trips(backend: Backend, dpid: int) -> None:
    store = backend.open()
    store.put_bond(bond(dpid))
    store.put_sessions([(dpid, "bond0", {"dpid": dpid})])
    store = backend.reopen(store)
    snapshot = store.load()
    assert [(c.dpid, c.name) for c in snapshot.bonds] == [(dpid, "bond0")]
    assert snapshot.sessions == {(dpid, "bond0"): {"dpid": dpid}}
    revision = store.delete_bond(dpid, "bond0", expect=snapshot.switch_revision(dpid))
    assert store.load().switch_revision(dpid) == revision
    assert store.load().bonds == [] and store.load_sessions() == {}


def test_sessions_round_trip_in_batches_and_go_with_their_bond(backend: Backend) -> None:
    store = backend.open()
    store.put_bond(bond(1, "b0"))
    store.put_bond(bond(1, "b1", (3,), key=2))
    state = {"group_id": 7, "members": {"1": {"actor": [1, 2], "partner": None}}}
    many = [(1, f"other{n}", {"n": n}) for n in range(300)]  # more than one etcd transaction holds
    store.put_sessions([(1, "b0", state), (1, "b1", {"n": -1})] + many)
    store.put_sessions([(1, "b1", {"n": 1})])
    store = backend.reopen(store)
    sessions = store.load().sessions
    assert sessions[(1, "b0")] == state and sessions[(1, "b1")] == {"n": 1} and len(sessions) == 302
    store.delete_bond(1, "b0")
    assert (1, "b0") not in store.load_sessions() and store.load_sessions()[(1, "b1")] == {"n": 1}


def test_one_switch_s_sessions_are_read_alone(backend: Backend) -> None:
    store = backend.open()
    store.put_sessions([(1, "b0", {"n": 1}), (0x10, "b0", {"n": 16}), (2**64 - 1, "b0", {"n": -1})])
    assert store.load_sessions(1) == {(1, "b0"): {"n": 1}}  # not 0x10's, whose key starts the same
    assert store.load_sessions(2**64 - 1) == {(2**64 - 1, "b0"): {"n": -1}}
    assert store.load_sessions(7) == {}
    assert len(store.load_sessions()) == 3


def test_a_stale_expect_is_refused_and_writes_nothing(backend: Backend) -> None:
    store = backend.open()
    seen = store.put_bond(bond(5, "b0"), expect=0)
    other_switch = store.put_bond(bond(6, "b0"), expect=0)  # another switch's change does not make 5 stale
    current = store.put_bond(bond(5, "b1", (3,), key=2), expect=seen)
    assert seen < other_switch < current
    with pytest.raises(StoreConflict) as refused:
        store.put_bond(bond(5, "b2", (4,), key=3), expect=seen)
    assert refused.value.dpid == 5 and refused.value.expected == seen
    with pytest.raises(StoreConflict):
        store.delete_bond(5, "b0", expect=seen)
    snapshot = store.load()
    assert [(c.dpid, c.name) for c in snapshot.bonds] == [(5, "b0"), (5, "b1"), (6, "b0")]
    assert snapshot.switch_revision(5) == current
    # Deleting a bond that is not there changes nothing, not even the revision.
    assert store.delete_bond(5, "absent", expect=current) == current
    assert store.poll_changes(timeout=0.3) == []
    assert store.load().switch_revision(5) == current


def test_of_two_racing_writers_exactly_one_wins(backend: Backend) -> None:
    """Two instances create bonds sharing a port from the same view: one gets StoreConflict."""
    first = backend.open()
    second = backend.peer(first)
    revision = first.load().switch_revision(9)
    for round_ in range(RACE_ROUNDS):
        start = threading.Barrier(2)
        outcomes: dict[str, int | StoreConflict] = {}

        def write(store: Store, name: str, port: int) -> None:
            start.wait()
            try:
                outcomes[name] = store.put_bond(bond(9, name, (port, 100), key=port), expect=revision)
            except StoreConflict as exc:
                outcomes[name] = exc

        names = (f"a{round_}", f"b{round_}")
        threads = [threading.Thread(target=write, args=(store, name, round_ + 1 + 50 * i))
                   for i, (store, name) in enumerate(zip((first, second), names))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        won = [name for name in names if isinstance(outcomes[name], int)]
        assert len(won) == 1, outcomes
        lost = next(name for name in names if name not in won)
        assert isinstance(outcomes[lost], StoreConflict)
        bonds = {c.name for c in first.load().bonds}
        assert won[0] in bonds and lost not in bonds
        first.delete_bond(9, won[0])  # port 100 is free again for the next round
        revision = first.load().switch_revision(9)


def test_the_feed_delivers_every_writers_changes_in_order_once(backend: Backend) -> None:
    first = backend.open()
    second = backend.peer(first)
    first.put_bond(bond(3, "before"))  # made before load: not a change of the feed
    assert first.poll_changes(timeout=0.3) == []  # no feed before the first load
    revision = first.load().switch_revision(3)
    second.load()
    expected: list[BondChange] = []
    for step in range(6):
        writer = (first, second)[step % 2]
        config = bond(3, f"b{step}", (10 + step,), key=10 + step)
        revision = writer.put_bond(config, expect=revision)
        expected.append(BondChange(3, config.name, config, revision))
        if step % 3 == 2:
            revision = writer.delete_bond(3, f"b{step - 1}", expect=revision)
            expected.append(BondChange(3, f"b{step - 1}", None, revision))
    other = bond(2**64 - 1, "x")
    expected.append(BondChange(other.dpid, "x", other, second.put_bond(other)))
    assert [c.revision for c in expected] == sorted(c.revision for c in expected)
    assert changes_until(first, len(expected)) == expected
    if second is not first:
        assert changes_until(second, len(expected)) == expected
    # A new load starts the feed afresh: what it read is not delivered again.
    first.put_bond(bond(3, "late", (99,), key=99))
    first.load()
    assert first.poll_changes(timeout=0.5) == []


@pytest.fixture
def own_cluster() -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd is not installed: run scripts/setup.sh (it installs etcd-server)")
    with etcd_cluster(3) as started:
        yield started


def test_etcd_writes_and_the_feed_survive_killing_a_member(own_cluster: EtcdCluster) -> None:
    """The member the store talks to, and the leader, is killed: writes go on, the watch resumes."""
    leader = own_cluster.leader()
    endpoints = [("127.0.0.1", leader.client_port)] + [e for e in own_cluster.endpoints if e[1] != leader.client_port]
    store, watcher = EtcdStore(endpoints), EtcdStore(endpoints)
    try:
        revision = store.load().switch_revision(1)
        watcher.load()
        before = bond(1, "before")
        revision = store.put_bond(before, expect=revision)
        assert changes_until(watcher, 1) == [BondChange(1, "before", before, revision)]
        leader.kill()
        started = time.monotonic()
        after = bond(1, "after", (3,), key=2)
        revision = store.put_bond(after, expect=revision)
        took = time.monotonic() - started
        print(f"first write after killing the leader took {took:.2f} s")
        assert took < etcd_store.OPERATION_DEADLINE
        assert changes_until(watcher, 1) == [BondChange(1, "after", after, revision)]
        reader = EtcdStore(own_cluster.endpoints)  # a new instance, the dead member among its endpoints
        assert [c.name for c in reader.load_all()] == ["before", "after"]
        reader.close()
    finally:
        store.close()
        watcher.close()


def test_etcd_an_idle_watch_is_recreated_without_losing_or_repeating_changes(
        etcd_backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(etcd_store, "WATCH_IDLE", 0.3)
    store = etcd_backend.open()
    writer = etcd_backend.open()
    store.load()
    caplog.set_level(logging.WARNING, logger="ryu_lag.etcd_store")
    expected = []
    for step in range(3):
        time.sleep(1.0)  # the stream goes idle and is re-created at least twice between writes
        config = bond(6, f"b{step}", (step + 1,), key=step + 1)
        expected.append(BondChange(6, config.name, config, writer.put_bond(config)))
    assert changes_until(store, 3) == expected
    assert not caplog.records  # re-created quietly


def test_etcd_a_watch_behind_a_compaction_resynchronises(
        etcd_backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Changes and a compaction land between the load and the watch: the missed ones arrive as a diff."""
    store, writer = etcd_backend.open(), etcd_backend.open()
    writer.put_bond(bond(2, "kept"))
    writer.put_bond(bond(2, "gone", (3,), key=2))
    changed, new = bond(2, "kept", (1, 2, 4)), bond(2, "new", (5,), key=5)
    start = etcd_store._Watch.start

    def start_late(watch: etcd_store._Watch) -> None:
        writer.put_bond(changed)
        writer.delete_bond(2, "gone")
        compact_to = writer.put_bond(new)
        member = etcd_backend.cluster.members[0].client_url
        requests.post(member + "/v3/kv/compaction", json={"revision": compact_to}, timeout=5).raise_for_status()
        start(watch)

    monkeypatch.setattr(etcd_store._Watch, "start", start_late)
    caplog.set_level(logging.WARNING, logger="ryu_lag.etcd_store")
    store.load()
    got = changes_until(store, 3)
    revision = got[0].revision
    assert got == [BondChange(2, "gone", None, revision), BondChange(2, "kept", changed, revision),
                   BondChange(2, "new", new, revision)]
    assert any("compaction" in r.getMessage() for r in caplog.records)
    later = bond(2, "later", (6,), key=6)
    revision = writer.put_bond(later)
    assert changes_until(store, 1) == [BondChange(2, "later", later, revision)]


def put_raw(cluster: EtcdCluster, key: str, value: str) -> None:
    """A value written by someone else (etcdctl, another program), straight through the gateway."""
    reply = requests.post(
        cluster.members[0].client_url + "/v3/kv/put",
        json={"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()},
        timeout=5,
    )
    reply.raise_for_status()


def test_etcd_values_that_are_not_bonds_are_skipped_and_logged(
        etcd_backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """Config comes from outside the process now (a SQLite file, ours alone, refuses bad rows at open)."""
    backend = etcd_backend
    store = backend.open()
    good = bond(4, "good")
    store.put_bond(good)
    config = etcd_store.CONFIG + "0000000000000004/bonds/"
    bad = {
        "notjson": "{",
        "nolist": json.dumps(["x"]),
        "noports": json.dumps({"name": "noports", "ports": []}),
        "othername": json.dumps(bond(4, "someone").to_dict()),
    }
    caplog.set_level(logging.ERROR, logger="ryu_lag.etcd_store")
    for name, value in bad.items():
        put_raw(backend.cluster, config + name, value)
    put_raw(backend.cluster, etcd_store.CONFIG + "not-a-dpid/bonds/x", json.dumps(good.to_dict()))
    assert store.load().bonds == [good]
    assert {name for name in bad if any(name in r.getMessage() for r in caplog.records)} == set(bad)
    # The watch skips them too, and goes on with the next valid change.
    put_raw(backend.cluster, config + "notjson", "still not json")
    later = bond(4, "later", (7,), key=7)
    revision = store.put_bond(later)
    assert changes_until(store, 1) == [BondChange(4, "later", later, revision)]


def test_etcd_a_retried_write_recognises_its_applied_first_attempt(
        etcd_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry after a lost reply compares against a revision its own first attempt moved."""
    store = etcd_backend.open()
    seen = store.load().switch_revision(8)

    class SameId:
        hex = "retried-write-id"

    monkeypatch.setattr(etcd_store.uuid, "uuid4", SameId)
    applied = store.put_bond(bond(8), expect=seen)
    assert store.put_bond(bond(8), expect=seen) == applied  # the "retry": succeeds, writes nothing
    assert store.load().switch_revision(8) == applied
    monkeypatch.undo()
    with pytest.raises(StoreConflict):  # a different write from the same stale view still loses
        store.put_bond(bond(8), expect=seen)


EVENTLET_SCRIPT = """
import eventlet
eventlet.monkey_patch()
import sys
from ryu_lag.config import BondConfig
from ryu_lag.stores import open_store
store = open_store(sys.argv[1])
peer = open_store(sys.argv[1])
store.load()
config = BondConfig.from_dict(1, {"name": "b0", "ports": [1]}, key=1)
revision = peer.put_bond(config, expect=store.load().switch_revision(1))
changes = []
for _ in range(50):
    changes += store.poll_changes(timeout=0.2)
    if changes:
        break
assert [(c.name, c.revision) for c in changes] == [("b0", revision)], changes
store.close()
peer.close()
print("ok")
"""


def test_etcd_store_under_eventlet(cluster: EtcdCluster) -> None:
    """The controller runs monkey-patched: writes, the watch thread and close work there too."""
    cluster.wipe()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(EVENTLET_SCRIPT), cluster.url],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_open_store_picks_the_backend_from_the_url(cluster: EtcdCluster, tmp_path: Path) -> None:
    opened: list[Callable[[], None]] = []
    try:
        sqlite = open_store(f"sqlite:{tmp_path}/s.sqlite3")
        opened.append(sqlite.close)
        etcd = open_store(cluster.url)
        opened.append(etcd.close)
        assert isinstance(sqlite, BondStore) and isinstance(etcd, EtcdStore)
        assert etcd.url == cluster.url and sqlite.url == f"sqlite:{tmp_path}/s.sqlite3"
    finally:
        for close in opened:
            close()
