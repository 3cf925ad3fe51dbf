"""A switch that speaks only OpenFlow 1.0 is refused with a clear log line, and the controller lives on."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from tests.rest import live

OFP10 = 0x01
OFPT_HELLO, OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 0, 5, 6


def _recv_message(sock: socket.socket) -> tuple[int, int, int]:
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    version, msg_type, length, xid = struct.unpack("!BBHI", header)
    remaining = length - 8
    while remaining > 0:
        remaining -= len(sock.recv(remaining))
    return version, msg_type, xid


def test_openflow_10_switch_is_refused_with_a_clear_log_line(tmp_path: Path):
    controller = live.start(tmp_path / "state.sqlite3", tmp_path / "ryu-lag.log")
    try:
        with socket.create_connection(("127.0.0.1", controller.of_port), timeout=5) as sock:
            sock.sendall(struct.pack("!BBHI", OFP10, OFPT_HELLO, 8, 1))
            while True:
                _, msg_type, xid = _recv_message(sock)
                if msg_type == OFPT_FEATURES_REQUEST:
                    break
            # datapath id, n_buffers, n_tables, pad, capabilities, actions; no ports
            body = struct.pack("!QIB3xII", 0xABC, 0, 1, 0, 0)
            sock.sendall(struct.pack("!BBHI", OFP10, OFPT_FEATURES_REPLY, 8 + len(body), xid) + body)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "needs OpenFlow 1.3" not in controller.log_text():
                time.sleep(0.05)
        log = controller.log_text()
        assert "switch 0000000000000abc speaks OpenFlow version 0x01; ryu_lag needs OpenFlow 1.3" in log, log
        assert controller.client().list_switches() == []  # never treated as connected
        assert controller.proc.poll() is None
    finally:
        controller.stop()
