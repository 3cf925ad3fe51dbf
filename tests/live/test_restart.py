"""State that survives: bonds come back after SIGKILL; a bad state file or an insecure bind stops start-up.

The last test needs root and Open vSwitch: after SIGKILL and a restart, the bond
renegotiates with a real partner without any request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.client import LagClient, Unauthorized
from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore
from tests.integration.netlab import Lab, ovs_available, wait_for
from tests.rest import live


def configs(client: LagClient) -> dict[tuple[str, str], dict[str, Any]]:
    """Every bond's configuration, by (dpid, name)."""
    return {
        (s["dpid"], b["name"]): b["config"]
        for s in client.list_switches()
        for b in client.get_switch(s["dpid"])["bonds"]
    }


def test_bonds_survive_sigkill(tmp_path: Path):
    db, log = tmp_path / "state.sqlite3", tmp_path / "ryu-lag.log"
    first = live.start(db, log)
    try:
        client = first.client()
        client.create_bond(1, [1, 2], rate="fast")
        client.put_bond(1, "trunk", [3, 4], mode="passive", key=9, min_links=2, system="02:00:00:00:aa:01")
        client.create_bond(2, [5])
        client.create_bond(2, [6])
        client.delete_bond(2, "bond0")
        client.put_bond(2, "bond1", [6, 7])
        before = configs(client)
    finally:
        first.kill()
    assert set(before) == {("0000000000000001", "bond0"), ("0000000000000001", "trunk"), ("0000000000000002", "bond1")}
    second = live.start(db, log)
    try:
        assert configs(second.client()) == before
    finally:
        second.stop()


def assert_refused(db: Path, *words: str, extra: tuple[str, ...] = ()) -> str:
    """ryu-lag exits non-zero, saying ``words``, and leaves the file as it was."""
    original = db.read_bytes() if db.is_file() else None
    done = live.run_to_exit(db, *extra)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "ryu_lag cannot start" in output, output
    for word in words:
        assert word in output, output
    assert "Traceback" not in output, output
    if original is not None:
        assert db.read_bytes() == original
    return output


def test_garbage_database_stops_startup(tmp_path: Path):
    db = tmp_path / "state.sqlite3"
    db.write_bytes(b"this is not a database\n" * 300)
    assert_refused(db, str(db), "file is not a database")


def test_corrupt_database_stops_startup(tmp_path: Path):
    db = tmp_path / "state.sqlite3"
    store = BondStore(str(db))
    for key in range(1, 40):
        store.put(BondConfig.from_dict(1, {"name": f"b{key}", "ports": [key]}, key=key))
    store.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 3 * 4096
    data[4096:8192] = b"\xa5" * 4096  # the second page: part of the bonds table
    db.write_bytes(bytes(data))
    assert_refused(db, str(db), "malformed")


def rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT dpid, name, config FROM bonds ORDER BY dpid, name").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("config", ["'{\"ports\": []}'", "X'7b7d'", "42"], ids=["invalid", "blob", "number"])
def test_invalid_stored_bond_stops_startup(tmp_path: Path, config: str):
    db = tmp_path / "state.sqlite3"
    store = BondStore(str(db))
    store.put(BondConfig.from_dict(1, {"name": "good", "ports": [1]}, key=1))
    store.close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"INSERT INTO bonds VALUES (1, 'bad', {config})")
    conn.close()
    before = rows(db)
    assert_refused(db, "bond 'bad' of 0000000000000001 is invalid")
    assert rows(db) == before


def test_unusable_database_path_stops_startup(tmp_path: Path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    assert_refused(directory, "cannot be used")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_refused(blocker / "state.sqlite3", "cannot create the state directory")


def test_non_loopback_without_token_refuses_to_start(tmp_path: Path):
    db = tmp_path / "state.sqlite3"
    output = assert_refused(db, "0.0.0.0", "RYU_LAG_API_TOKEN", "--lag-insecure", extra=("--wsapi-host", "0.0.0.0"))
    assert "REST API" in output


@pytest.mark.parametrize("how", ["insecure", "token"])
def test_non_loopback_with_token_or_insecure_starts(tmp_path: Path, how: str):
    db, log = tmp_path / "state.sqlite3", tmp_path / "ryu-lag.log"
    token = "bind-test-token" if how == "token" else None
    extra = ("--lag-insecure",) if how == "insecure" else ()
    ctl = live.start(db, log, "--wsapi-host", "0.0.0.0", *extra, token=token)
    try:
        if how == "token":
            with pytest.raises(Unauthorized):
                LagClient(ctl.url).list_switches()
            assert "bind-test-token" not in ctl.log_text()
        else:
            assert "without a token" in ctl.log_text()
    finally:
        ctl.stop()


@pytest.fixture
def ovs() -> None:
    reason = ovs_available()
    if reason is not None:
        pytest.skip(f"Open vSwitch unavailable: {reason}")


def changing_requests(client: LagClient) -> float:
    """REST requests other than GET/HEAD that the controller has answered."""
    total = 0.0
    for family in text_string_to_metric_families(client.metrics()):
        for sample in family.samples:
            if sample.name == "ryu_lag_rest_requests_total" and sample.labels["method"] not in ("GET", "HEAD"):
                total += sample.value
    return total


def test_partner_renegotiates_after_sigkill(tmp_path: Path, ovs: None):
    db, log = tmp_path / "state.sqlite3", tmp_path / "ryu-lag.log"
    lab = Lab()
    controllers: list[live.Controller] = []
    try:
        first = live.start(db, log)
        controllers.append(first)
        net = live.partner_lab(lab, first.of_port)
        system = live.partner_system(net.bond)
        first.client().create_bond(1, [1, 2], rate="fast")
        wait_for(lambda: live.distributing_with(first.client(), 1, "bond0", system), 20, "negotiated before the kill")
        first.kill()
        wait_for(lambda: not live.partner_negotiated(net.bond), 15, "the partner notices the controller is gone")

        second = live.start(db, log, of_port=first.of_port, api_port=first.api_port)
        controllers.append(second)
        client = second.client()
        bond = wait_for(lambda: live.distributing_with(client, 1, "bond0", system), 30, "renegotiated after the restart")
        assert bond["config"]["rate"] == "fast" and bond["distributing"] == 2
        wait_for(lambda: live.partner_negotiated(net.bond), 15, "the partner negotiated again")
        assert changing_requests(client) == 0  # no request made: the stored bond did it
    finally:
        for ctl in controllers:
            ctl.stop()
        lab.close()
