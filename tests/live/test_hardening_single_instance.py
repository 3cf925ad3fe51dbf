"""One ``ryu-lag`` per state file and per port: a second one refuses to start, clearly and at once.

Before, eventlet's SO_REUSEPORT let two controllers share the ports (the kernel split switches
and REST requests between them) and both wrote the same state file.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from tests.integration.netlab import free_port
from tests.rest import live

EXIT_SECONDS = 20.0  # a start-up that refuses: Ryu's imports on a noisy 2-core VM, no more


def run_second(db: Path, of_port: int, api_port: int) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        live.command(db, of_port, api_port), capture_output=True, text=True, timeout=EXIT_SECONDS,
        stdin=subprocess.DEVNULL, env=live.environment(None),
    )
    return done, time.monotonic() - started


def assert_first_still_serves(first: live.Controller) -> None:
    assert first.proc.poll() is None
    r = requests.get(first.url + "/lag/0000000000000001/bond0", timeout=5)
    assert r.status_code == 200, r.text


def test_a_second_controller_on_the_same_state_file_exits_naming_the_pid(tmp_path: Path):
    db, log = tmp_path / "state.sqlite3", tmp_path / "first.log"
    first = live.start(db, log)
    try:
        first.client().create_bond(1, [1, 2])
        done, seconds = run_second(db, first.of_port, first.api_port)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert f"in use by another ryu-lag (pid {first.proc.pid}," in output
        assert "ryu_lag cannot start" in output and "Traceback" not in output, output
        assert seconds < EXIT_SECONDS
        assert_first_still_serves(first)
    finally:
        first.stop()


def test_a_second_controller_with_another_state_file_cannot_bind_the_ports(tmp_path: Path):
    first = live.start(tmp_path / "first.sqlite3", tmp_path / "first.log")
    try:
        first.client().create_bond(1, [1, 2])
        for of_port, api_port, busy in [
            (first.of_port, first.api_port, first.api_port),  # REST binds first, in the main thread
            (first.of_port, free_port(), first.of_port),  # OpenFlow binds in a green thread
        ]:
            done, _ = run_second(tmp_path / "second.sqlite3", of_port, api_port)
            output = done.stdout + done.stderr
            assert done.returncode == 2, output
            assert f"cannot listen on 127.0.0.1:{busy}: Address already in use" in output, output
            assert "Traceback" not in output, output
        assert_first_still_serves(first)
    finally:
        first.stop()
