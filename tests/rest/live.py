"""A real ``ryu-lag`` process for live tests, started the way ``netlab.Lab.controller`` does.

Free loopback ports, ``--lag-db`` in a temporary directory, the log in a file; the token
goes through the environment (``RYU_LAG_API_TOKEN``), never the command line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from clients.client import LagClient
from ryu_lag.options import TOKEN_ENV
from tests.integration.netlab import VENV_BIN, Host, Lab, Member, free_port, lacp_show, parse_lacp_show, sh

STARTUP_SECONDS = 30.0


@dataclass
class Controller:
    """A running ``ryu-lag``."""

    proc: subprocess.Popen
    of_port: int
    api_port: int
    db: Path
    log: Path
    token: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, **kw: object) -> LagClient:
        return LagClient(self.url, token=self.token, **kw)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no chance to clean anything up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, grace: float = 1.5) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()


def command(db: Path, of_port: int, api_port: int, *extra: str) -> list[str]:
    return [
        str(VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(of_port), "--wsapi-port", str(api_port),
        "--lag-db", str(db), *extra,
    ]


def environment(token: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    return env


def two_ports() -> tuple[int, int]:
    of_port = free_port()
    api_port = free_port()
    while api_port == of_port:
        api_port = free_port()
    return of_port, api_port


def start(
    db: Path, log: Path, *extra: str, token: str | None = None, of_port: int | None = None, api_port: int | None = None
) -> Controller:
    """Start ``ryu-lag`` and wait until its REST API answers."""
    ports = two_ports()
    of_port, api_port = of_port or ports[0], api_port or ports[1]
    with log.open("a") as out:
        proc = subprocess.Popen(
            command(db, of_port, api_port, *extra), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=environment(token),
        )
    controller = Controller(proc, of_port, api_port, db, log, token)
    wait_ready(controller)
    return controller


def wait_ready(controller: Controller) -> None:
    headers = {"Authorization": f"Bearer {controller.token}"} if controller.token else {}
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if controller.proc.poll() is not None:
            raise AssertionError(f"ryu-lag exited with {controller.proc.returncode}:\n{controller.log_text()}")
        try:
            if requests.get(controller.url + "/lag", headers=headers, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            controller.stop()
            raise AssertionError(f"ryu-lag's REST API did not answer in {STARTUP_SECONDS} s:\n{controller.log_text()}")
        time.sleep(0.1)


def run_to_exit(db: Path, *extra: str, token: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``ryu-lag`` expecting it to refuse to start; its output comes back."""
    of_port, api_port = two_ports()
    return subprocess.run(
        command(db, of_port, api_port, *extra), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env=environment(token),
    )


@dataclass
class PartnerLab:
    """Switch s1 (dpid 1) under the controller, cabled on ports 1 and 2 to an Open vSwitch
    LACP bond on bridge p1; host h1 behind the partner, h2 on s1 port 3."""

    lab: Lab
    s1: str
    partner: str
    bond: str
    members: list[Member]
    h1: Host
    h2: Host


def partner_lab(lab: Lab, of_port: int) -> PartnerLab:
    s1 = lab.bridge("s1", dpid=1, controller=of_port)
    sh("ovs-vsctl", "set", "controller", s1, "max_backoff=1000")  # reconnect quickly after a restart
    partner = lab.bridge("p1")
    members = [lab.member_path(s1, 1, "1"), lab.member_path(s1, 2, "2")]
    h1 = lab.host("h1", "10.0.0.1", partner)
    h2 = lab.host("h2", "10.0.0.2", s1, 3)
    bond = lab.ovs_bond(partner, members, mode="active", fast=True)
    return PartnerLab(lab, s1, partner, bond, members, h1, h2)


def partner_system(bond: str) -> str:
    """The Open vSwitch bond's own LACP system id."""
    found = re.search(r"^\s*sys_id: (\S+)", lacp_show(bond), re.M)
    assert found, lacp_show(bond)
    return found.group(1)


def partner_negotiated(bond: str) -> bool:
    """Open vSwitch has every member current and attached: it hears us and agrees."""
    show = parse_lacp_show(lacp_show(bond))
    members = show["members"].values()
    return "negotiated" in show["status"] and bool(members) and all(
        m["status"].startswith("current attached") for m in members
    )


def distributing_with(client: LagClient, dpid: int, name: str, system: str) -> dict | None:
    """The bond once every member distributes with ``system`` as partner, else None."""
    bond = client.get_bond(dpid, name)
    members = bond["members"]
    if all(m["mux"] == "distributing" and m["enabled"] and m["partner"]["system"] == system for m in members):
        return bond
    return None
