"""examples/link_aggregation.py end to end: Mininet against a live ``ryu-lag``.

The bond on s1 (dpid 1, ports 1 and 2, fast) is written to the state file
before ryu-lag starts. Node names carry a random prefix so that the run does
not collide with other networks on this machine; the test checks that the
script removed everything it created.
"""

from __future__ import annotations

import pathlib
import secrets
import subprocess

import pytest

from tests.integration.conftest import store_bonds
from tests.integration.netlab import Lab, sh

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "link_aggregation.py"
MININET_PYTHON = "/usr/bin/python3"


def kernel_has_bonding() -> bool:
    """Whether this kernel can make an 802.3ad bond (the module loaded, or loadable)."""
    if pathlib.Path("/sys/class/net/bonding_masters").exists():
        return True
    return subprocess.run(["modprobe", "bonding"], capture_output=True).returncode == 0


def leftovers(prefix: str) -> list[str]:
    bridges = [b for b in sh("ovs-vsctl", "list-br").split() if b.startswith(prefix)]
    links = [line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link").splitlines()]
    return bridges + [name for name in links if name.startswith(prefix)]


@pytest.mark.parametrize("bond", ["ovs", "linux"])
def test_example_negotiates_and_pings(lab: Lab, tmp_path: pathlib.Path, bond: str):
    if bond == "linux" and not kernel_has_bonding():
        pytest.skip("this kernel has no bonding module: h1's Linux 802.3ad bond cannot be made here")
    db = tmp_path / "state.sqlite3"
    store_bonds(db, (1, {"name": "bond0", "ports": [1, 2], "rate": "fast"}))
    log = tmp_path / "ryu-lag.log"
    _, of_port, _ = lab.controller(db, log=log)
    prefix = "mx" + secrets.token_hex(1)
    try:
        proc = subprocess.run(
            [MININET_PYTHON, str(SCRIPT), "--controller-port", str(of_port), "--prefix", prefix, "--timeout", "30",
             "--bond", bond],
            capture_output=True, text=True, timeout=180,
        )
    finally:
        # Should the script have died before its own cleanup, remove what it left.
        stray = leftovers(prefix)
        for name in stray:
            sh("ovs-vsctl", "--if-exists", "del-br", name, check=False)
            sh("ip", "link", "del", name, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output}\n--- ryu-lag log ---\n{log.read_text()[-3000:]}"
    assert "*** LACP negotiated" in output
    if bond == "ovs":  # ovs-appctl lacp/show of h1's bond
        assert "status: active negotiated" in output, output
        assert output.count("current attached") == 2, output
    else:  # /proc/net/bonding/bond0 of h1
        assert "IEEE 802.3ad Dynamic link aggregation" in output, output
        assert output.count("Aggregator ID") >= 3, output  # the bond's and each link's
    assert "*** success" in output
    assert stray == [], f"the script left {stray} behind"
