"""BondStore: durability, the full 64-bit dpid range, schema 1 migration, session state, one owner."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ryu_lag.config import BondConfig
from ryu_lag.store import LOCK_SUFFIX, SCHEMA_VERSION, BondStore, StoreError

SQLITE_SYNCHRONOUS = {"NORMAL": 1, "FULL": 2}
EDGE_DPIDS = [0, 2**63 - 1, 2**63, 2**64 - 1]
# The schema 1 table exactly as the first release created it.
V1_SCHEMA = (
    "CREATE TABLE bonds (dpid INTEGER NOT NULL, name TEXT NOT NULL,"
    " config TEXT NOT NULL, PRIMARY KEY (dpid, name))"
)


def bond(dpid: int = 1, name: str = "bond0", ports: tuple[int, ...] = (1, 2), key: int = 1) -> BondConfig:
    return BondConfig.from_dict(dpid, {"name": name, "ports": list(ports)}, key=key)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


@pytest.fixture
def store(path: str):
    store = BondStore(path)
    yield store
    store.close()


def reopen(store: BondStore) -> BondStore:
    store.close()
    return BondStore(store.path)


@pytest.mark.parametrize(("fsync", "mode"), [(False, "NORMAL"), (True, "FULL")])
def test_fsync_chooses_sqlite_synchronous_mode(path: str, fsync: bool, mode: str) -> None:
    store = BondStore(path, fsync=fsync)
    try:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == SQLITE_SYNCHRONOUS[mode]
    finally:
        store.close()


def test_a_change_is_visible_to_another_connection_when_put_returns(store: BondStore) -> None:
    store.put(bond())
    reader = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        assert reader.execute("SELECT name FROM bonds").fetchall() == [("bond0",)]
    finally:
        reader.close()


@pytest.mark.parametrize("dpid", EDGE_DPIDS, ids=hex)
def test_every_64_bit_dpid_round_trips(store: BondStore, dpid: int) -> None:
    store.put(bond(dpid))
    store.put(bond(dpid, "bond1", (3,), key=2))
    store = reopen(store)
    try:
        assert [(c.dpid, c.name) for c in store.load_all()] == [(dpid, "bond0"), (dpid, "bond1")]
        store.delete(dpid, "bond0")
        assert [(c.dpid, c.name) for c in store.load_all()] == [(dpid, "bond1")]
    finally:
        store.close()


def test_bonds_load_in_dpid_order_then_creation_order(store: BondStore) -> None:
    for dpid, name in [(2**64 - 1, "z"), (2, "b"), (2**63, "a"), (2, "a")]:
        store.put(bond(dpid, name))
    assert [(c.dpid, c.name) for c in store.load_all()] == [(2, "b"), (2, "a"), (2**63, "a"), (2**64 - 1, "z")]


def make_v1_file(path: str, rows: list[tuple[int, str, str]], user_version: int = 1) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(V1_SCHEMA)
    conn.executemany("INSERT INTO bonds VALUES (?, ?, ?)", rows)
    conn.execute(f"PRAGMA user_version={user_version}")
    conn.close()


def v1_row(config: BondConfig) -> tuple[int, str, str]:
    data = config.to_dict()
    del data["dpid"]
    return (config.dpid, config.name, json.dumps(data, sort_keys=True))


@pytest.mark.parametrize("user_version", [1, 0], ids=["v1", "v1-unversioned"])
def test_a_schema_1_file_is_migrated_and_keeps_every_bond(path: str, user_version: int) -> None:
    old = [bond(2**63 - 1, "top", (5,), key=3), bond(7, "b1", (3, 4), key=2), bond(7, "b0")]
    make_v1_file(path, [v1_row(c) for c in old], user_version)
    store = BondStore(path)
    try:
        assert store.load_all() == [old[1], old[2], old[0]]  # by dpid, then creation order
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store._db.execute("SELECT DISTINCT typeof(dpid) FROM bonds").fetchall() == [("text",)]
        store.put(bond(2**64 - 1))
        store.put_sessions([(7, "b0", {"x": 1})])
        store = reopen(store)
        assert [c.dpid for c in store.load_all()] == [7, 7, 2**63 - 1, 2**64 - 1]
        assert store.load_sessions() == {(7, "b0"): {"x": 1}}
    finally:
        store.close()


def test_an_invalid_schema_1_file_is_refused_and_left_as_it_was(path: str) -> None:
    make_v1_file(path, [v1_row(bond()), (1, "bad", '{"ports": []}')])
    before = sqlite3.connect(path).execute("SELECT * FROM bonds").fetchall()
    with pytest.raises(StoreError, match="bond 'bad' of 0000000000000001 is invalid"):
        BondStore(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM bonds").fetchall() == before
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_file_from_a_newer_schema_is_refused(path: str) -> None:
    BondStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer ryu-lag"):
        BondStore(path)


def test_sessions_round_trip_and_upsert(store: BondStore) -> None:
    store.put_sessions([(2**64 - 1, "bond0", {"members": {"1": {"state": 61}}}), (0, "bond0", {"a": [1, 2]})])
    store.put_sessions([(0, "bond0", {"a": None})])
    store = reopen(store)
    try:
        assert store.load_sessions() == {
            (2**64 - 1, "bond0"): {"members": {"1": {"state": 61}}},
            (0, "bond0"): {"a": None},
        }
    finally:
        store.close()


def test_put_sessions_is_one_transaction(store: BondStore) -> None:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.put_sessions((1, f"b{n}", {"n": n}) for n in range(5))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    assert len(store.load_sessions()) == 5


def test_a_session_row_that_does_not_decode_is_skipped(store: BondStore) -> None:
    store.put_sessions([(1, "good", {"ok": True})])
    with store._db:
        store._db.executemany("INSERT INTO sessions VALUES (?, ?, ?)", [
            ("0000000000000001", "garbage", "{not json"),
            ("0000000000000001", "list", "[1, 2]"),
            ("0000000000000001", "blob", b"\x00\xff"),
            ("not-a-dpid", "bond0", "{}"),
        ])
    assert store.load_sessions() == {(1, "good"): {"ok": True}}


def test_delete_removes_the_bonds_session_only(store: BondStore) -> None:
    store.put(bond(2**63))
    store.put(bond(2**63, "bond1", (3,), key=2))
    store.put_sessions([(2**63, "bond0", {"n": 0}), (2**63, "bond1", {"n": 1})])
    store.delete(2**63, "bond0")
    assert store.load_sessions() == {(2**63, "bond1"): {"n": 1}}
    assert [c.name for c in store.load_all()] == ["bond1"]


def test_a_second_store_on_the_same_file_is_refused_naming_the_pid(store: BondStore) -> None:
    with pytest.raises(StoreError, match=rf"in use by another ryu-lag \(pid {os.getpid()},"):
        BondStore(store.path)
    assert Path(store.path + LOCK_SUFFIX).read_text() == f"{os.getpid()}\n"
    store.put(bond())  # the first store is unharmed
    store.close()
    second = BondStore(store.path)  # closing released the lock
    second.close()


HOLDER = """
import sys, time
from ryu_lag.store import BondStore
store = BondStore(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_the_lock_names_another_process_and_dies_with_it(path: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(StoreError, match=rf"pid {holder.pid},"):
            BondStore(path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    BondStore(path).close()  # the kernel dropped the lock with the process


def test_a_refused_file_does_not_keep_the_lock(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="bad.sqlite3"):
        BondStore(str(bad))
    with open(str(bad) + LOCK_SUFFIX) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def test_memory_stores_take_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = BondStore(":memory:"), BondStore(":memory:")
    first.put(bond())
    assert second.load_all() == [] and [c.name for c in first.load_all()] == ["bond0"]
    first.close()
    second.close()
    assert list(tmp_path.iterdir()) == []


def test_a_schema_2_file_gets_switch_revisions_and_keeps_everything(path: str) -> None:
    store = BondStore(path)
    store.put(bond(2**64 - 1))
    store.put_sessions([(2**64 - 1, "bond0", {"n": 1})])
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE switches")  # what a schema 2 file holds
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    store = BondStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        snapshot = store.load()
        assert [c.dpid for c in snapshot.bonds] == [2**64 - 1] and snapshot.sessions == {(2**64 - 1, "bond0"): {"n": 1}}
        assert snapshot.switch_revision(2**64 - 1) == 0
        assert store.put_bond(bond(2**64 - 1, "bond1", (3,), key=2), expect=0) == 1
    finally:
        store.close()
