"""``ryu-lag`` as a real process: listens on loopback only, stops cleanly on SIGTERM."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore

BIN_DIR = Path(sys.executable).parent
STARTUP_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port``, as ``ss`` prints them."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()}


class RyuLag:
    """A running ``ryu-lag`` process and the ports it was told to use."""

    def __init__(self, tmp_path: Path, classic: bool = False) -> None:
        self.ofp_port = _free_port()
        self.rest_port = _free_port()
        self.log_path = tmp_path / "ryu-lag.log"
        self.db_path = tmp_path / "state.sqlite3"
        ports = ["--ofp-tcp-listen-port", str(self.ofp_port), "--wsapi-port", str(self.rest_port)]
        if classic:  # plain ryu-manager: --lag-* options only exist in a config file
            config = tmp_path / "ryu.conf"
            config.write_text(f"[DEFAULT]\nlag_db = {self.db_path}\n")
            command = [str(BIN_DIR / "ryu-manager"), *ports, "--ofp-listen-host", "127.0.0.1",
                       "--wsapi-host", "127.0.0.1", "--config-file", str(config), "ryu_lag.app"]
        else:
            command = [str(BIN_DIR / "ryu-lag"), *ports, "--lag-db", str(self.db_path)]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (_accepts(self.ofp_port) and _accepts(self.rest_port)):
            if self.process.poll() is not None:
                pytest.fail(f"ryu-lag exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"ryu-lag did not listen within {STARTUP_SECONDS} s:\n{self.log()}")
            time.sleep(0.2)


@pytest.fixture
def ryu_lag(tmp_path: Path) -> Iterator[RyuLag]:
    proc = RyuLag(tmp_path)
    try:
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def test_listens_on_loopback_and_terminates_cleanly(ryu_lag: RyuLag) -> None:
    ryu_lag.wait_listening()
    assert _listening_addresses(ryu_lag.ofp_port) == {"127.0.0.1"}
    assert _listening_addresses(ryu_lag.rest_port) == {"127.0.0.1"}

    for path in ("/lag", "/lag/0000000000000001", "/elsewhere"):
        requests.get(f"http://127.0.0.1:{ryu_lag.rest_port}{path}", timeout=5)

    ryu_lag.process.terminate()
    assert ryu_lag.process.wait(timeout=15) == 0, ryu_lag.log()
    assert "Traceback" not in ryu_lag.log()
    # Served by ryu_lag's quiet server: eventlet's access log (one line per request) is off.
    assert "GET /lag" not in ryu_lag.log() and "HTTP/1.1" not in ryu_lag.log(), ryu_lag.log()


def test_plain_ryu_manager_loads_the_app_through_the_installed_shim(tmp_path: Path) -> None:
    """``ryu-manager ryu_lag.app``, the classic way: the venv's .pth hook supplies what
    modern eventlet lacks, and the app reads its state file from the config file."""
    store = BondStore(str(tmp_path / "state.sqlite3"))
    store.put(BondConfig.from_dict(1, {"name": "bond0", "ports": [1, 2]}, key=1))
    store.close()
    proc = RyuLag(tmp_path, classic=True)
    try:
        proc.wait_listening()
        body = requests.get(f"http://127.0.0.1:{proc.rest_port}/lag", timeout=5).json()
        assert body == {"switches": [{"dpid": "0000000000000001", "connected": False, "bond_count": 1}]}
        assert "Traceback" not in proc.log()
        assert "HTTP/1.1" not in proc.log()  # the app's quiet server even under plain ryu-manager
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()
