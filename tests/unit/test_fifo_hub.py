"""The FIFO eventlet hub: ready sockets are served in the order they became ready."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each case runs in a fresh interpreter: a hub is per thread and cannot be swapped once running.
_WAKE_ORDER = textwrap.dedent(
    """
    import eventlet, eventlet.hubs
    from eventlet.green import socket
    from ryu_lag import fifo_hub
    print(fifo_hub.install(), fifo_hub.install())
    pairs = [socket.socketpair() for _ in range(12)]
    woken = []
    def reader(i, sock):
        sock.recv(1)
        woken.append(i)
    for i, (_, b) in enumerate(pairs):
        eventlet.spawn(reader, i, b)
    eventlet.sleep(0.05)  # every reader is blocked in recv
    order = [5, 11, 0, 7, 3, 9, 1, 10, 2, 8, 4, 6]
    for i in order:  # no yield in between: all ready before the hub polls
        pairs[i][0].send(b"x")
    eventlet.sleep(0.05)
    print(woken == order, woken)
    print(type(eventlet.hubs.get_hub()).__name__)
    """
)


def _run(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_ready_sockets_wake_in_the_order_they_became_ready() -> None:
    installed, woken, hub = _run(_WAKE_ORDER)
    assert installed == "True True"
    assert woken.startswith("True"), woken
    assert hub == "FifoHub"


def test_a_running_hub_is_left_alone() -> None:
    code = (
        "import eventlet\n"
        "eventlet.sleep(0)\n"  # the default hub now exists
        "from ryu_lag import fifo_hub\n"
        "import eventlet.hubs\n"
        "print(fifo_hub.install(), type(eventlet.hubs.get_hub()).__name__)\n"
    )
    assert _run(code) == ["False Hub"]


def test_launchers_install_it_before_ryu_starts_its_hub() -> None:
    # A stand-in for Ryu's manager: the real one's import already starts eventlet's default hub.
    code = (
        "import sys, types\n"
        "import eventlet.hubs\n"
        "manager = types.ModuleType('ryu.cmd.manager')\n"
        "manager.main = lambda **_: print(type(eventlet.hubs.get_hub()).__name__)\n"
        "sys.modules['ryu.cmd.manager'] = manager\n"
        "from ryu_lag import launcher, ryu_manager\n"
        "launcher.main([])\n"
        "ryu_manager.main()\n"
    )
    assert _run(code) == ["FifoHub", "FifoHub"]
