"""End to end over REST: a bond created with the API negotiates with an Open vSwitch partner.

One lab for the module, the tests in order: create and negotiate, learn and show MACs,
the CLI's view, flush, delete. The controller runs with a token (from the environment).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients.client import LagClient
from ryu_lag.switching import BOND_GROUP_MIN
from tests.integration.netlab import VENV_BIN, Lab, sh, wait_for
from tests.rest import live

TOKEN = "e2e-token-7c1a"


@dataclass
class Setup:
    ctl: live.Controller
    net: live.PartnerLab
    client: LagClient
    system: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("rest_e2e")
    lab = Lab()
    ctl = None
    try:
        ctl = live.start(tmp / "state.sqlite3", tmp / "ryu-lag.log", token=TOKEN)
        net = live.partner_lab(lab, ctl.of_port)
        client = ctl.client()
        wait_for(lambda: client.get_switch(1)["connected"] if _known(client) else False, 20, "s1 connected")
        yield Setup(ctl, net, client, live.partner_system(net.bond))
    finally:
        if ctl is not None:
            ctl.stop()
        lab.close()


def _known(client: LagClient) -> bool:
    return any(s["dpid"] == "0000000000000001" for s in client.list_switches())


def test_bond_created_over_rest_negotiates(setup: Setup):
    created = setup.client.create_bond(1, [1, 2])
    assert created["name"] == "bond0" and created["applied"]
    bond = wait_for(lambda: live.distributing_with(setup.client, 1, "bond0", setup.system), 20,
                    "both members distributing with the Open vSwitch partner")
    assert bond["up"] and bond["distributing"] == 2
    assert bond["partner"]["system"] == setup.system
    for member in bond["members"]:
        assert member["selection"] == "selected" and member["link"] == "up"
        assert member["lacp_timeout"] == 90  # our rate: slow (the default)
        assert member["partner"]["state"]["timeout"] is True  # Open vSwitch asked for fast
        assert 0 <= member["since_last_lacpdu"] <= 31  # we asked for slow: it sends every 30 s
        assert member["counters"]["lacpdus_rx"] > 0 and member["counters"]["bad_rx"] == 0
    wait_for(lambda: live.partner_negotiated(setup.net.bond), 15, "Open vSwitch negotiated")
    groups = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", setup.net.s1)
    assert set(re.findall(r"watch_port:(\d+)", groups)) == {"1", "2"}


def test_macs_learned_over_the_bond(setup: Setup):
    out = setup.net.h2.ping("10.0.0.1", count=3)
    assert " 0% packet loss" in out, out
    h1_mac = setup.net.h1.run("cat", "/sys/class/net/eth0/address").strip()
    h2_mac = setup.net.h2.run("cat", "/sys/class/net/eth0/address").strip()
    macs = {m["mac"]: m for m in setup.client.list_macs(1)}
    assert macs[h1_mac] == {"mac": h1_mac, "port": None, "bond": "bond0"}
    assert macs[h2_mac] == {"mac": h2_mac, "port": 3, "bond": None}
    on_bond = setup.client.list_macs(1, bond="bond0")  # also the partner side's own interfaces
    assert h1_mac in [m["mac"] for m in on_bond] and {m["bond"] for m in on_bond} == {"bond0"}


def test_lagctl_shows_the_negotiated_bond(setup: Setup):
    done = subprocess.run(
        [str(VENV_BIN / "lagctl"), "--url", setup.ctl.url, "show", "1"],
        capture_output=True, text=True, env=live.environment(TOKEN), timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "switch 0000000000000001: connected" in done.stdout
    assert "bond bond0 on 0000000000000001: up, 2/2 members distributing" in done.stdout
    rows = [line for line in done.stdout.splitlines() if re.match(r"^\s+[12]\s+up\s+distributing\s+selected\s+yes", line)]
    assert len(rows) == 2 and all(setup.system in row for row in rows)


def test_flush_one_bond(setup: Setup):
    setup.net.h2.ping("10.0.0.1", count=1)
    flushed = setup.client.flush_macs(1, bond="bond0")
    assert flushed >= 1
    assert setup.client.list_macs(1, bond="bond0") == []
    flows = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", setup.net.s1, "table=1")
    learned = [line for line in flows.splitlines() if "dl_src=" in line and "metadata=0x100000001" in line]
    assert learned == []


def test_delete_makes_plain_ports_again(setup: Setup):
    setup.client.delete_bond(1, "bond0")
    switch = setup.client.get_switch(1)
    assert switch["bonds"] == []
    assert {p["port"]: p["bond"] for p in switch["ports"] if p["port"] in (1, 2)} == {1: None, 2: None}
    assert "watch_port" not in sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", setup.net.s1)
    flows = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", setup.net.s1)
    assert re.search(rf"group:{BOND_GROUP_MIN}\b", flows) is None  # nothing sends to the bond's group (floods use their own)
    wait_for(lambda: not live.partner_negotiated(setup.net.bond), 15, "Open vSwitch loses the partner")
