"""Ryu's listeners (OpenFlow and WSGI, both ``hub.StreamServer``) bind without SO_REUSEPORT.

eventlet sets SO_REUSEPORT by default, so a second controller on the same port used to bind
as well and the kernel split connections between the two.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

import pytest
from ryu.lib import hub  # tests/conftest.py applied the eventlet shim


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_second_stream_server_on_the_same_port_fails_to_bind():
    port = free_port()
    first = hub.StreamServer(("127.0.0.1", port), None)
    try:
        assert first.server.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        with pytest.raises(OSError) as refused:
            hub.StreamServer(("127.0.0.1", port), None)
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        first.server.close()


def test_plain_ryu_manager_gets_exclusive_listeners_from_the_import_hook():
    """The venv's .pth hook alone (no ryu_lag import) makes Ryu's hub exclusive."""
    code = (
        "import socket, sys\n"
        "from ryu.lib import hub\n"
        "assert 'ryu_lag.store' not in sys.modules\n"
        f"server = hub.StreamServer(('127.0.0.1', {free_port()}), None).server\n"
        "print(server.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"
