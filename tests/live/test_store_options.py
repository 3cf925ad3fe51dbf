"""``--lag-store`` on the command line: a store that cannot be used stops ``ryu-lag`` at once, status 2,
with one line saying why, and nothing is created."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.netlab import VENV_BIN, free_port
from tests.rest import live

EXIT_SECONDS = 20.0  # Ryu's imports on a noisy 2-core VM


@pytest.mark.parametrize("args, says", [
    (["--lag-db", "{tmp}/a.sqlite3", "--lag-store", "sqlite:{tmp}/b.sqlite3"], "give --lag-store or --lag-db, not both"),
    (["--lag-store", "redis://127.0.0.1:6379"], "unknown store 'redis'"),
    (["--lag-store", "etcd://127.0.0.1:99999"], "is not 1..65535"),
    (["--lag-store", "etcd://127.0.0.1:{port}", "--lag-instance-id", "a/b"], "bad instance id 'a/b'"),
])
def test_a_store_that_cannot_be_used_stops_the_controller_with_status_2(tmp_path: Path, args: list[str], says: str):
    args = [a.format(tmp=tmp_path, port=free_port()) for a in args]
    done = subprocess.run(
        [str(VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(free_port()), "--wsapi-port", str(free_port()), *args],
        capture_output=True, text=True, timeout=EXIT_SECONDS, stdin=subprocess.DEVNULL, env=live.environment(None),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "ryu_lag cannot start" in output and says in output and "Traceback" not in output, output
    assert list(tmp_path.iterdir()) == []  # no state file made


def test_a_cluster_instance_that_cannot_reach_etcd_exits_2_naming_the_members(tmp_path: Path):
    port = free_port()
    done = subprocess.run(
        [str(VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(free_port()), "--wsapi-port", str(free_port()),
         "--lag-store", f"etcd://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=EXIT_SECONDS + 15, stdin=subprocess.DEVNULL, env=live.environment(None),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "ryu_lag cannot start" in output and f"127.0.0.1:{port}" in output and "no member answered" in output, output
    assert "Traceback" not in output, output
