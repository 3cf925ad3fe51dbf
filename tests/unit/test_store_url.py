"""--lag-store URLs: sqlite:PATH and etcd://HOST:PORT[,HOST:PORT...], and clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from ryu_lag import etcd_store
from ryu_lag.store import BondStore
from ryu_lag.stores import StoreError, StoreUrl, StoreUrlError, open_store, parse_store_url, sqlite_url
from tests.etcdlab import free_ports


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:/var/lib/ryu-lag/state.sqlite3", "/var/lib/ryu-lag/state.sqlite3"),
    ("sqlite:state.sqlite3", "state.sqlite3"),
    ("sqlite:dir/with:colon,comma", "dir/with:colon,comma"),
    ("sqlite::memory:", ":memory:"),
])
def test_sqlite_urls_name_a_path(url: str, path: str) -> None:
    assert parse_store_url(url) == StoreUrl("sqlite", path=path)
    assert sqlite_url(path) == url


@pytest.mark.parametrize(("url", "endpoints"), [
    ("etcd://127.0.0.1:2379", [("127.0.0.1", 2379)]),
    ("etcd://a.example:1,b-2.example:65535,10.0.0.3:2379",
     [("a.example", 1), ("b-2.example", 65535), ("10.0.0.3", 2379)]),
    ("etcd://[::1]:2379,[fe80::1]:2380", [("::1", 2379), ("fe80::1", 2380)]),
    ("etcd://localhost:02379", [("localhost", 2379)]),
])
def test_etcd_urls_name_endpoints_in_order(url: str, endpoints: list[tuple[str, int]]) -> None:
    assert parse_store_url(url) == StoreUrl("etcd", endpoints=tuple(endpoints))


@pytest.mark.parametrize(("url", "message"), [
    ("", "unknown store ''"),
    ("/var/lib/state.sqlite3", "unknown store '/var/lib/state.sqlite3'; use sqlite:PATH or etcd://"),
    ("mysql://db:3306", "unknown store 'mysql'"),
    ("SQLITE:/x", "unknown store 'SQLITE'"),
    ("sqlite:", "sqlite: needs a file path"),
    ("sqlite:///var/lib/x", "without '//'"),
    ("sqlite:a\0b", "NUL"),
    ("etcd://", "etcd:// needs HOST:PORT"),
    ("etcd:127.0.0.1:2379", "unknown store 'etcd'"),
    ("etcd://127.0.0.1", "'127.0.0.1' is not HOST:PORT"),
    ("etcd://:2379", "':2379' is not HOST:PORT"),
    ("etcd://h:0", "port '0' of 'h:0' is not 1..65535"),
    ("etcd://h:65536", "port '65536'"),
    ("etcd://h:x", "port 'x'"),
    ("etcd://h:2379/", "port '2379/'"),
    ("etcd://h:2379,", "'' is not HOST:PORT"),
    ("etcd://h:1,,h:2", "'' is not HOST:PORT"),
    ("etcd://user@h:2379", "'user@h' is not a host name"),
    ("etcd://::1:2379", "IPv6 goes in brackets"),
    ("etcd://h:2379,h:2379", "listed twice"),
    ("etcd://h :2379", "'h ' is not a host name"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError) as refused:
        parse_store_url(url)
    assert message in str(refused.value) and repr(url) in str(refused.value)


def test_open_store_opens_sqlite(tmp_path: Path) -> None:
    store = open_store(f"sqlite:{tmp_path}/state.sqlite3", fsync=True)
    try:
        assert isinstance(store, BondStore) and store.path == f"{tmp_path}/state.sqlite3"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_an_unreachable_etcd_is_a_store_error_naming_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_store, "OPERATION_DEADLINE", 0.3)
    ports = free_ports(2)  # nothing listens there
    with pytest.raises(StoreError) as refused:
        open_store(f"etcd://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}")
    message = str(refused.value)
    assert "cannot reach etcd" in message and f"127.0.0.1:{ports[0]}" in message and f"127.0.0.1:{ports[1]}" in message
