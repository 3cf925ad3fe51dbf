"""A real etcd cluster on loopback for tests: each member a process of Debian's ``etcd`` (3.4).

Members listen on free 127.0.0.1 ports, keep their data in one temporary directory and
log to a file there; a cluster is stopped by killing its members' pids, and the directory
is removed. ``scripts/setup.sh`` installs ``etcd-server``; :func:`etcd_binary` says why a
test must skip where it is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds for every member to report healthy on a noisy VM
STOP_TIMEOUT = 5.0
# etcd's defaults: elections that a busy 2-core VM does not trigger by accident.
HEARTBEAT_MS = 100
ELECTION_MS = 1000


def etcd_binary() -> str | None:
    """The ``etcd`` executable, or None when ``etcd-server`` is not installed."""
    return shutil.which("etcd")


@dataclass
class Member:
    """One etcd process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        """The member answers /health with a leader elected."""
        try:
            reply = requests.get(self.client_url + "/health", timeout=1.0)
            return reply.status_code == 200 and reply.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL this member (by its pid) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)


class EtcdCluster:
    """``size`` members of one new cluster, all on loopback, in a temporary directory.

    ``election_ms`` is each member's ``--election-timeout`` (default :data:`ELECTION_MS`);
    etcd grants a lease at least 1.5 times it, so leases of 1 s need 600 or less.
    """

    def __init__(self, size: int = 3, election_ms: int | None = None) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (scripts/setup.sh installs etcd-server)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="ryu_lag-etcd-"))
        self.token = f"ryu_lag-test-{uuid.uuid4().hex}"
        self.election_ms = ELECTION_MS if election_ms is None else election_ms
        ports = free_ports(2 * size)
        self.members = [
            Member(f"m{i}", ports[2 * i], ports[2 * i + 1], self.root / f"m{i}", self.root / f"m{i}.log")
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(LOOPBACK, m.client_port) for m in self.members]

    @property
    def url(self) -> str:
        """The ``--lag-store`` URL naming every member."""
        return "etcd://" + ",".join(f"{host}:{port}" for host, port in self.endpoints)

    def start(self) -> None:
        """Start every member and wait until each one is healthy."""
        for member in self.members:
            self._spawn(member)
        self._wait_healthy(self.members)

    def restart(self, *members: Member) -> None:
        """Start killed ``members`` again (same name, ports and data) and wait until each is healthy.

        A member restarted alone rejoins its cluster at once; restarting every member needs
        them all started before any is healthy (a leader needs a quorum), which this does.
        """
        for member in members:
            if member.running:
                raise RuntimeError(f"etcd member {member.name} is running")
            self._spawn(member)
        self._wait_healthy(list(members))

    def _spawn(self, member: Member) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(
                [
                    self.binary,
                    "--name", member.name,
                    "--data-dir", str(member.data_dir),
                    "--listen-client-urls", member.client_url,
                    "--advertise-client-urls", member.client_url,
                    "--listen-peer-urls", member.peer_url,
                    "--initial-advertise-peer-urls", member.peer_url,
                    "--initial-cluster", initial,
                    "--initial-cluster-state", "new",  # ignored once the data directory holds the cluster
                    "--initial-cluster-token", self.token,
                    "--heartbeat-interval", str(HEARTBEAT_MS),
                    "--election-timeout", str(self.election_ms),
                    "--logger", "zap",
                    "--log-level", "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_healthy(self, members: list[Member]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for member in members:
            while not member.healthy():
                if not member.running:
                    raise RuntimeError(f"etcd member {member.name} exited: {self.log_tail(member)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member {member.name} not healthy after {START_TIMEOUT:g} s:"
                                       f" {self.log_tail(member)}")
                time.sleep(0.05)

    def leader(self) -> Member:
        """The member that is leader now (asked of the first running member)."""
        for member in self.members:
            if member.running:
                status = requests.post(member.client_url + "/v3/maintenance/status", json={}, timeout=2.0).json()
                leader_id = status["leader"]
                break
        else:
            raise RuntimeError("no etcd member is running")
        for member in self.members:
            if member.running:
                status = requests.post(member.client_url + "/v3/maintenance/status", json={}, timeout=2.0).json()
                if status["header"]["member_id"] == leader_id:
                    return member
        raise RuntimeError(f"the leader {leader_id} is not one of the running members")

    def wipe(self) -> None:
        """Delete every key (between tests sharing the cluster)."""
        member = next(m for m in self.members if m.running)
        # key "\0" with range_end "\0": every key (base64 of one NUL byte is "AA==").
        reply = requests.post(member.client_url + "/v3/kv/deleterange", json={"key": "AA==", "range_end": "AA=="},
                              timeout=5.0)
        reply.raise_for_status()

    def log_tail(self, member: Member, lines: int = 10) -> str:
        try:
            return "\n".join(member.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Kill every member by its pid, then remove the directory."""
        for member in self.members:
            member.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def etcd_cluster(size: int = 3, election_ms: int | None = None) -> Iterator[EtcdCluster]:
    """A started cluster of ``size`` members (``EtcdCluster``'s ``election_ms``), closed on exit whatever happens."""
    with ExitStack() as stack:
        cluster = EtcdCluster(size, election_ms)
        stack.callback(cluster.close)
        cluster.start()
        yield cluster


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback now (held together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
