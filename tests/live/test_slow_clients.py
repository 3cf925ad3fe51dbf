"""Slow clients against a real ``ryu-lag``: they are capped and dropped, everyone else is answered.

Over a thousand connections each send one header byte a second (slowloris). eventlet's
own server ran a greenthread per connection from a pool of 1,024 and stopped accepting
while it was full: no one else got an answer for as long as they lasted. ryu_lag's server
(rest/server.py) refuses connections over its per-address cap at once and drops those it
admitted when their head misses ``HEAD_SECONDS``; meanwhile a client from another address
gets ``GET /lag`` answered within a second.

File descriptors: this test needs one per slow connection (it raises its own soft limit);
the server needs ``MAX_CONNECTIONS + FD_RESERVE`` and raises its soft limit itself.
"""

from __future__ import annotations

import http.client
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rest.server import HEAD_SECONDS, MAX_CONNECTIONS_PER_CLIENT
from tests.rest import live

SLOW_CONNECTIONS = 1100  # more than eventlet's pool of 1,024 (the report saw 1,076)
SLOW_CLIENT = "127.0.0.1"
OTHER_CLIENT = "127.0.0.2"  # all of 127.0.0.0/8 is loopback: another client address
ANSWER_SECONDS = 1.0  # what the other client's GET may take, each time
REFUSAL_SECONDS = 2.0  # a connection over the cap is closed this soon (room for a noisy VM)
OPEN_BATCH = 25  # connections opened together, within the server's listen backlog of 50
DROP_SLACK_SECONDS = 5.0  # an admitted slow connection is closed by HEAD_SECONDS plus this
# The head a slow client trickles: it would take longer than the test to send.
SLOW_HEAD = b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64


@dataclass
class SlowConnection:
    """One slowloris connection: a byte of its head a second until the server closes it."""

    sock: socket.socket
    connected: float | None = None
    sent: int = 0
    closed: float | None = None
    answer: bytes = b""

    def trickle(self, now: float) -> None:
        """Send the next byte of the head, unless the server has closed (reading first: data
        sent to a closed socket is answered with a reset, which discards the answer)."""
        self.poll(now)
        if self.closed is not None or self.connected is None:
            return
        try:
            self.sent += self.sock.send(SLOW_HEAD[self.sent:self.sent + 1])
        except BlockingIOError:
            pass
        except OSError:
            self._close(now)

    def poll(self, now: float) -> None:
        """Note when the connection is established and when the server closes it."""
        if self.closed is not None:
            return
        if self.connected is None:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._close(now)
                return
            try:
                self.sock.getpeername()
            except OSError:  # connecting
                return
            self.connected = now
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._close(now)
            return
        self.answer += data
        self._close(now)  # data (a 503 or 408, each with Connection: close) or end of stream

    def lifetime(self) -> float:
        assert self.connected is not None and self.closed is not None
        return self.closed - self.connected

    def _close(self, now: float) -> None:
        self.closed = now
        self.sock.close()


@dataclass
class Attack:
    connections: list[SlowConnection] = field(default_factory=list)

    def open(self, port: int, count: int) -> None:
        """``count`` connections, in batches that the server's listen backlog takes."""
        for first in range(0, count, OPEN_BATCH):
            for _ in range(min(OPEN_BATCH, count - first)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.bind((SLOW_CLIENT, 0))
                sock.connect_ex(("127.0.0.1", port))
                self.connections.append(SlowConnection(sock))
            time.sleep(0.02)
            self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        for conn in self.connections:
            conn.poll(now)

    def trickle(self) -> None:
        now = time.monotonic()
        for conn in self.connections:
            conn.trickle(now)

    def open_count(self) -> int:
        return sum(conn.closed is None for conn in self.connections)

    def close_all(self) -> None:
        for conn in self.connections:
            if conn.closed is None:
                conn.sock.close()


def get_lag_from_other_client(port: int) -> tuple[int, float]:
    """``GET /lag`` on a new connection from ``OTHER_CLIENT``: the status and the seconds it took."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_SECONDS * 3, source_address=(OTHER_CLIENT, 0))
    try:
        conn.request("GET", "/lag")
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    except OSError:
        return 0, time.monotonic() - start
    finally:
        conn.close()


@pytest.fixture
def fd_room() -> Iterator[None]:
    """Enough open files for the slow connections (this process and the server it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CONNECTIONS + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"the hard open-file limit {hard} is below the {needed} this test needs (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slow_clients_are_capped_and_dropped_while_others_are_answered(tmp_path: Path, fd_room: None) -> None:
    controller = live.start(tmp_path / "state.sqlite3", tmp_path / "ryu-lag.log")
    attack = Attack()
    answers: list[tuple[float, int, float]] = []  # (when, status, seconds)
    try:
        start = time.monotonic()
        attack.open(controller.api_port, SLOW_CONNECTIONS)
        end = start + HEAD_SECONDS + DROP_SLACK_SECONDS
        next_trickle = time.monotonic()
        while time.monotonic() < end:
            if time.monotonic() >= next_trickle:
                attack.trickle()
                next_trickle += 1.0
            status, seconds = get_lag_from_other_client(controller.api_port)
            answers.append((time.monotonic() - start, status, seconds))
            time.sleep(0.1)
            attack.poll()
        attack.poll()
    finally:
        attack.close_all()
        controller.stop()
    assert "Traceback" not in controller.log_text(), controller.log_text()

    slow = [(when, status, round(seconds, 3)) for when, status, seconds in answers if status != 200 or seconds > ANSWER_SECONDS]
    assert not slow, f"GET /lag from another client failed or took over {ANSWER_SECONDS} s: {slow}"
    assert len(answers) >= 4 * (HEAD_SECONDS + DROP_SLACK_SECONDS), answers  # asked throughout

    conns = attack.connections
    assert all(c.connected is not None for c in conns), sum(c.connected is None for c in conns)
    still_open = attack.open_count()
    assert still_open == 0, f"{still_open} slow connections still open after {HEAD_SECONDS + DROP_SLACK_SECONDS} s"
    # Admitted up to the per-address cap, then dropped at the head deadline with a JSON 408.
    dropped = [c for c in conns if c.answer.startswith(b"HTTP/1.1 408 ")]
    assert 0 < len(dropped) <= MAX_CONNECTIONS_PER_CLIENT, len(dropped)
    assert all(b'"request_timeout"' in c.answer for c in dropped)
    lives = sorted(round(c.lifetime(), 2) for c in dropped)
    assert HEAD_SECONDS - 1.0 <= lives[0] and lives[-1] <= HEAD_SECONDS + DROP_SLACK_SECONDS, lives
    # The rest refused at once: a JSON 503 when the client read it before the close, else a reset.
    refused = [c for c in conns if not c.answer.startswith(b"HTTP/1.1 408 ")]
    assert len(refused) >= SLOW_CONNECTIONS - MAX_CONNECTIONS_PER_CLIENT
    assert all(not c.answer or c.answer.startswith(b"HTTP/1.1 503 ") for c in refused)
    assert sum(b'"too_many_connections"' in c.answer for c in refused) >= len(refused) // 2
    late = sorted(round(c.lifetime(), 2) for c in refused if c.lifetime() > REFUSAL_SECONDS)
    assert not late, f"refused connections closed only after {late} s"
