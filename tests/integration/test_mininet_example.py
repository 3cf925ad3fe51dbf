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


def mininet_unavailable() -> str | None:
    """None when Mininet can run here, else why not."""
    probe = subprocess.run([MININET_PYTHON, "-c", "import mininet.net"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{MININET_PYTHON} cannot import mininet: {probe.stderr.strip()[-200:]}"
    if subprocess.run(["which", "mnexec"], capture_output=True).returncode != 0:
        return "mnexec (Mininet's helper) is not installed"
    return None


def leftovers(prefix: str) -> list[str]:
    bridges = [b for b in sh("ovs-vsctl", "list-br").split() if b.startswith(prefix)]
    links = [line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link").splitlines()]
    return bridges + [name for name in links if name.startswith(prefix)]


def test_example_negotiates_and_pings(lab: Lab, tmp_path: pathlib.Path):
    reason = mininet_unavailable()
    if reason is not None:
        pytest.skip(reason)
    db = tmp_path / "state.sqlite3"
    store_bonds(db, (1, {"name": "bond0", "ports": [1, 2], "rate": "fast"}))
    log = tmp_path / "ryu-lag.log"
    _, of_port, _ = lab.controller(db, log=log)
    prefix = "mx" + secrets.token_hex(1)
    try:
        proc = subprocess.run(
            [MININET_PYTHON, str(SCRIPT), "--controller-port", str(of_port), "--prefix", prefix, "--timeout", "30"],
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
    assert "status: active negotiated" in output, output
    assert output.count("current attached") == 2, output
    assert "*** success" in output
    assert stray == [], f"the script left {stray} behind"
