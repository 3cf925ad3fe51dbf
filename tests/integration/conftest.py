"""Fixtures for tests on a real Open vSwitch (userspace datapath) in network namespaces."""

from __future__ import annotations

import pathlib
import subprocess
from dataclasses import dataclass

import pytest

from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore
from tests.integration.netlab import Host, Lab, Member, TcpRelay, ovs_available


@pytest.fixture(scope="session", autouse=True)
def _needs_ovs():
    reason = ovs_available()
    if reason is not None:
        pytest.skip(f"Open vSwitch unavailable: {reason}")


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.close()


def store_bonds(db: pathlib.Path, *bonds: tuple[int, dict]) -> None:
    """Write bond configuration straight into the state file before the controller starts."""
    store = BondStore(str(db))
    for key, (dpid, data) in enumerate(bonds, start=1):
        store.put(BondConfig.from_dict(dpid, data, key=key))
    store.close()


@dataclass
class Classic:
    """h1 behind an Open vSwitch LACP partner over two member paths; h2-h4 single-homed on s1."""

    lab: Lab
    s1: str
    partner: str
    bond: str
    members: list[Member]
    h1: Host
    others: list[Host]
    of_port: int
    api_port: int
    log: pathlib.Path
    db: pathlib.Path
    controller: subprocess.Popen
    relay: TcpRelay | None = None  # between s1 and the controller, when asked for


def build_classic(
    lab: Lab,
    tmp: pathlib.Path,
    *,
    rate: str = "fast",
    mode: str = "active",
    partner_mode: str = "active",
    extra_ports: int = 0,
    max_backoff: int | None = None,
    relay: bool = False,
    bfd: dict | None = None,
    partner_bfd: bool = False,
) -> Classic:
    """The classic experiment; s1 (dpid 1) bonds ports 1,2 (plus ``extra_ports`` more members).

    ``max_backoff`` goes to s1's controller record; with ``relay`` s1 reaches the
    controller through a ``TcpRelay`` of the lab. ``bfd`` is bond0's BFD setting (its
    REST ``bfd`` object; off when None); with ``partner_bfd`` the partner runs Open
    vSwitch's BFD (100 ms) on its bond members.
    """
    db = tmp / "state.sqlite3"
    ports = [1, 2] + [6 + i for i in range(extra_ports)]
    bond0 = {"name": "bond0", "ports": ports, "rate": rate, "mode": mode}
    if bfd is not None:
        bond0["bfd"] = bfd
    store_bonds(db, (1, bond0))
    log = tmp / "ryu-lag.log"
    controller, of_port, api_port = lab.controller(db, log=log)
    tcp_relay = lab.relay(of_port) if relay else None
    s1 = lab.bridge("s1", dpid=1)
    lab.set_controller(s1, tcp_relay.port if tcp_relay else of_port, max_backoff=max_backoff)
    partner = lab.bridge("p1")
    members = [lab.member_path(s1, 1, "1"), lab.member_path(s1, 2, "2")]
    h1 = lab.host("h1", "10.0.0.1", partner)
    others = [lab.host(f"h{i}", f"10.0.0.{i}", s1, i + 1) for i in (2, 3, 4)]
    bond = lab.ovs_bond(partner, members, mode=partner_mode, fast=True, bfd=partner_bfd)
    return Classic(lab, s1, partner, bond, members, h1, others, of_port, api_port, log, db, controller, tcp_relay)
