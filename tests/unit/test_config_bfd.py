"""A bond's ``bfd`` configuration: defaults, one refusal per bad field (named), round trips, old rows."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ryu_lag.bfd import BfdConfig, EncapsulationKind
from ryu_lag.config import BondConfig, ConfigError, bfd_config_from_dict
from ryu_lag.store import BondStore


def config(bfd=..., **fields) -> BondConfig:
    body = {"ports": [1, 2], **fields}
    if bfd is not ...:
        body["bfd"] = bfd
    return BondConfig.from_dict(1, body, name="bond0", key=1)


def test_off_by_default_and_with_null():
    assert config().bfd is None
    assert config(None).bfd is None
    assert config().to_dict()["bfd"] is None


def test_empty_object_takes_the_defaults():
    bfd = config({}).bfd
    assert bfd == BfdConfig(100, 100, 3, EncapsulationKind.OVS, "00:23:20:00:00:01", "169.254.1.1", "169.254.1.0")
    assert config({}).to_dict()["bfd"] == {
        "min_tx_ms": 100, "min_rx_ms": 100, "multiplier": 3, "encapsulation": "ovs",
        "dst_mac": "00:23:20:00:00:01", "src_ip": "169.254.1.1", "dst_ip": "169.254.1.0",
    }


def test_every_field_taken_and_normalized():
    bfd = config({
        "min_tx_ms": 10, "min_rx_ms": 10000, "multiplier": 255, "encapsulation": "ovs",
        "dst_mac": "02:AA:00:00:00:01", "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2",
    }).bfd
    assert bfd == BfdConfig(10, 10000, 255, EncapsulationKind.OVS, "02:aa:00:00:00:01", "10.0.0.1", "10.0.0.2")
    assert bfd.timers_us() == (10_000, 10_000_000, 255)


def test_rfc7130_takes_its_own_mac():
    bfd = config({"encapsulation": "rfc7130"}).bfd
    assert bfd.dst_mac == "01:00:5e:90:00:01" and bfd.udp_port == 6784
    assert config({"encapsulation": "rfc7130", "dst_mac": "01:00:5E:90:00:01"}).bfd == bfd


@pytest.mark.parametrize(
    ("bfd", "field"),
    [
        (True, "bfd"),
        ([], "bfd"),
        ("ovs", "bfd"),
        ({"min_tx": 100}, "bfd.min_tx"),
        ({"min_tx_ms": 9}, "bfd.min_tx_ms"),
        ({"min_tx_ms": 10001}, "bfd.min_tx_ms"),
        ({"min_tx_ms": 100.0}, "bfd.min_tx_ms"),
        ({"min_tx_ms": True}, "bfd.min_tx_ms"),
        ({"min_tx_ms": None}, "bfd.min_tx_ms"),
        ({"min_rx_ms": 0}, "bfd.min_rx_ms"),
        ({"min_rx_ms": "100"}, "bfd.min_rx_ms"),
        ({"multiplier": 0}, "bfd.multiplier"),
        ({"multiplier": 256}, "bfd.multiplier"),
        ({"encapsulation": "vxlan"}, "bfd.encapsulation"),
        ({"encapsulation": ["ovs"]}, "bfd.encapsulation"),
        ({"dst_mac": "00:23:20:00:00"}, "bfd.dst_mac"),
        ({"dst_mac": "00:00:00:00:00:00"}, "bfd.dst_mac"),
        ({"dst_mac": 1}, "bfd.dst_mac"),
        ({"encapsulation": "rfc7130", "dst_mac": "00:23:20:00:00:01"}, "bfd.dst_mac"),
        ({"src_ip": "169.254.1"}, "bfd.src_ip"),
        ({"src_ip": 3}, "bfd.src_ip"),
        ({"src_ip": "::1"}, "bfd.src_ip"),
        ({"dst_ip": "169.254.1.256"}, "bfd.dst_ip"),
        ({"dst_ip": None}, "bfd.dst_ip"),
    ],
)
def test_each_bad_field_is_refused_by_name(bfd, field):
    with pytest.raises(ConfigError) as exc:
        config(bfd)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")


def test_the_error_says_the_range():
    with pytest.raises(ConfigError, match=r"bfd.min_tx_ms: an integer 10..10000 \(milliseconds\)"):
        config({"min_tx_ms": 5})
    with pytest.raises(ConfigError, match="bfd.multiplier: an integer 1..255"):
        config({"multiplier": 300})


@pytest.mark.parametrize(
    "bfd",
    [None, {}, {"encapsulation": "rfc7130", "src_ip": "192.0.2.1", "dst_ip": "192.0.2.2", "multiplier": 1},
     {"min_tx_ms": 50, "min_rx_ms": 300, "dst_mac": "02:00:00:00:00:01"}],
)
def test_round_trip(bfd):
    original = config(bfd)
    data = original.to_dict()
    del data["dpid"]
    assert BondConfig.from_dict(1, data) == original
    assert BondConfig.from_dict(1, json.loads(json.dumps(data))) == original
    if original.bfd is not None:
        assert bfd_config_from_dict(original.bfd.to_dict()) == original.bfd


def test_bfd_is_part_of_equality():
    assert config({}) != config()
    assert config({}) == config({"multiplier": 3})
    assert config({"min_tx_ms": 50}) != config({})


def test_stored_and_loaded(tmp_path):
    store = BondStore(str(tmp_path / "state.sqlite3"))
    try:
        with_bfd = config({"min_tx_ms": 50, "encapsulation": "rfc7130"})
        store.put(with_bfd)
        assert store.load_all() == [with_bfd]
    finally:
        store.close()


def test_rows_stored_before_bfd_load_as_off(tmp_path):
    path = str(tmp_path / "state.sqlite3")
    store = BondStore(path)
    store.put(config({}))
    store.close()
    old = {"name": "bond0", "ports": [1, 2], "key": 1, "mode": "active", "rate": "slow",
           "system_priority": 32768, "port_priority": 32768, "min_links": 1, "system": None}
    with sqlite3.connect(path) as db:
        db.execute("UPDATE bonds SET config = ?", (json.dumps(old),))
    db.close()
    store = BondStore(path)
    try:
        (loaded,) = store.load_all()
    finally:
        store.close()
    assert loaded == config() and loaded.bfd is None
