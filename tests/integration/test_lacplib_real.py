"""A classic lacplib app, changed only in its import line, on a real Open vSwitch.

The app (tests/fixtures/simple_switch_lacp_13_ported.py) runs under Ryu's own
manager; switch 1 bonds ports 1,2 towards an Open vSwitch LACP partner with a
host behind it, and single-homed hosts sit on ports 3 and 4.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import pytest

from tests.integration.netlab import Lab, free_port, lacp_show, parse_lacp_show, wait_for

APP = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "simple_switch_lacp_13_ported.py"
ROOT = APP.parents[2]
OUR_ACTOR = {"activity", "aggregation", "synchronized", "collecting", "distributing"}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def negotiated(bond: str) -> dict | None:
    """The partner's ``lacp/show`` once negotiated, every member current/attached, our actor fully up."""
    show = parse_lacp_show(lacp_show(bond))
    members = show["members"].values()
    ok = (
        "negotiated" in show["status"]
        and len(members) == 2
        and all(m["status"].startswith("current attached") for m in members)
        and all(OUR_ACTOR <= set(m.get("partner_state", "").split()) for m in members)
    )
    return show if ok else None


@pytest.fixture
def classic_app(lab: Lab, tmp_path: pathlib.Path):
    """The ported app under ``python -m ryu_lag.ryu_manager``, and the classic topology."""
    of_port = free_port()
    log = tmp_path / "ryu-manager.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ryu_lag.ryu_manager", str(APP), "--ofp-tcp-listen-port", str(of_port),
         "--ofp-listen-host", "127.0.0.1"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    lab.procs.append(proc)
    wait_for(lambda: listening(of_port) or proc.poll() is not None, 20, "ryu-manager listening")
    assert proc.poll() is None, log.read_text()
    s1 = lab.bridge("s1", dpid=1, controller=of_port)
    partner = lab.bridge("p1")
    members = [lab.member_path(s1, 1, "1"), lab.member_path(s1, 2, "2")]
    bonded = lab.host("h1", "10.0.0.1", partner)
    singles = [lab.host(f"h{i}", f"10.0.0.{i}", s1, i + 1) for i in (2, 3)]
    bond = lab.ovs_bond(partner, members, fast=True)
    return bond, bonded, singles, log


def test_book_app_negotiates_and_forwards(classic_app):
    bond, bonded, singles, log = classic_app
    try:
        show = wait_for(lambda: negotiated(bond), 20, f"{bond} negotiated")
    except AssertionError:
        pytest.fail(f"{lacp_show(bond)}\n--- controller log ---\n{log.read_text()[-4000:]}")
    assert len(show["members"]) == 2
    for host in singles:
        host.ping(bonded.ip, count=2)  # ARP and learning
        out = host.ping(bonded.ip, count=10, interval=0.05)
        assert " 0% packet loss" in out, f"{out}\n--- controller log ---\n{log.read_text()[-4000:]}"
    out = bonded.ping(singles[0].ip, count=5, interval=0.05)
    assert " 0% packet loss" in out, out
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "slave state changed port: 1 enabled: True" in text, text
    assert "slave state changed port: 2 enabled: True" in text, text
