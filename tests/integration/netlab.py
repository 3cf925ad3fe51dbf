"""Real test networks: Open vSwitch (userspace datapath) bridges, veths and namespaces.

Everything a ``Lab`` creates carries its random prefix and is removed by
``close()``, even after a failure. Hosts live in network namespaces with
addresses of their own, so test traffic never leaves this machine.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
BFD_INTERVAL_MS = 100  # the BFD intervals (min TX, min RX) tests run by default
REPO = Path(__file__).resolve().parents[2]


def sh(*args: str, check: bool = True) -> str:
    """Run a command, return its stdout; raise with its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ovs_available() -> str | None:
    """None when Open vSwitch can be used here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and Open vSwitch)"
    if shutil.which("ovs-vsctl") is None:
        return "Open vSwitch is not installed (run ./scripts/setup.sh)"
    if subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True).returncode != 0:
        started = subprocess.run(
            ["/usr/share/openvswitch/scripts/ovs-ctl", "--no-monitor", "start", "--system-id=random"],
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            return f"Open vSwitch does not start: {started.stderr.strip()[-300:]}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Host:
    """A network namespace with one interface."""

    name: str
    ip: str

    def run(self, *args: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def ping(self, ip: str, count: int = 3, interval: float = 0.2, wait: float = 1.0) -> str:
        return self.run("ping", "-c", str(count), "-i", str(interval), "-W", str(wait), ip, check=False)


@dataclass
class Member:
    """One member path: switch port <-> wire bridge <-> partner port."""

    ofport: int
    switch_if: str
    partner_if: str
    wire: str
    wire_switch_if: str
    wire_partner_if: str


@dataclass
class Lab:
    """Bridges, links and hosts under one random prefix."""

    prefix: str = field(default_factory=lambda: "rl" + secrets.token_hex(2))
    bridges: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    relays: list[TcpRelay] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        assert len(name) <= 15, name
        return name

    # ---- building blocks ------------------------------------------------------
    def bridge(self, suffix: str, *, dpid: int | None = None, controller: int | None = None) -> str:
        """A userspace bridge, fail_mode secure (nothing forwards until told)."""
        br = self.name(suffix)
        args = ["ovs-vsctl", "--", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "fail_mode=secure"]
        args += ["protocols=OpenFlow13", "other_config:disable-in-band=true"]
        if dpid is not None:
            args += [f"other_config:datapath-id={dpid:016x}"]
        sh(*args)
        self.bridges.append(br)
        if controller is not None:
            self.set_controller(br, controller)
        return br

    def set_controller(self, br: str, port: int, *, max_backoff: int | None = None) -> None:
        """Point ``br`` at a controller on 127.0.0.1:``port``.

        ``max_backoff`` (ms; Open vSwitch's default is 8000) caps how long the switch waits
        between attempts to reach the controller again; 1000 makes a restart quick.
        """
        sh("ovs-vsctl", "set-controller", br, f"tcp:127.0.0.1:{port}")
        settings = ["connection_mode=out-of-band", "inactivity_probe=5000"]
        if max_backoff is not None:
            settings.append(f"max_backoff={max_backoff}")
        sh("ovs-vsctl", "set", "controller", br, *settings)

    def set_controllers(self, br: str, ports: list[int], *, max_backoff: int | None = None) -> None:
        """Point ``br`` at every controller of a cluster, one on 127.0.0.1 per port in ``ports``,
        each set up as ``set_controller`` sets its one."""
        args = ["ovs-vsctl"]
        for index, port in enumerate(ports):
            settings = [f'target="tcp:127.0.0.1:{port}"', "connection_mode=out-of-band", "inactivity_probe=5000"]
            if max_backoff is not None:
                settings.append(f"max_backoff={max_backoff}")
            args += ["--", f"--id=@c{index}", "create", "controller", *settings]
        args += ["--", "set", "bridge", br, "controller=[" + ",".join(f"@c{i}" for i in range(len(ports))) + "]"]
        sh(*args)

    def connected(self, br: str) -> bool:
        """Whether ``br`` has an OpenFlow connection to its controller."""
        return sh("ovs-vsctl", "get", "controller", br, "is_connected", check=False).strip() == "true"

    def veth(self, a: str, b: str) -> None:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self.links.append(a)
        for ifname in (a, b):
            sh("ip", "link", "set", ifname, "up")
            sh("ethtool", "-K", ifname, "tx", "off", check=False)

    def add_port(self, br: str, ifname: str, ofport: int | None = None) -> None:
        args = ["ovs-vsctl", "add-port", br, ifname]
        if ofport is not None:
            args += ["--", "set", "interface", ifname, f"ofport_request={ofport}"]
        sh(*args)

    def host(self, suffix: str, ip: str, br: str, ofport: int | None = None) -> Host:
        """A namespace host whose eth0 is plugged into ``br``."""
        ns = self.name(suffix)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        inside, outside = self.name(suffix + "e"), self.name(suffix + "o")
        self.veth(inside, outside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", inside, "name", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off", check=False)
        self.add_port(br, outside, ofport)
        return Host(ns, ip)

    def member_path(self, switch_br: str, ofport: int, tag: str) -> Member:
        """switch port ``ofport`` <-> a forwarding wire bridge <-> ``partner_if``, left for the partner to plug in."""
        wire = self.bridge(f"w{tag}")
        # switch side a <-> b wire c <-> d partner side
        s_if, ws_if = self.name(f"m{tag}a"), self.name(f"m{tag}b")
        p_if, wp_if = self.name(f"m{tag}d"), self.name(f"m{tag}c")
        self.veth(s_if, ws_if)
        self.veth(p_if, wp_if)
        self.add_port(switch_br, s_if, ofport)
        self.add_port(wire, ws_if, 1)
        self.add_port(wire, wp_if, 2)
        self.wire_forward(wire, True)
        return Member(ofport, s_if, p_if, wire, ws_if, wp_if)

    def wire_forward(self, wire: str, forward: bool) -> None:
        """Let the wire carry frames, or (carrier staying up) silently drop all of them."""
        sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", wire)
        if forward:
            sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", wire, "in_port=1,actions=output:2")
            sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", wire, "in_port=2,actions=output:1")

    def carrier(self, member: Member, up: bool, *, switch_side: bool = True, partner_side: bool = True) -> None:
        state = "up" if up else "down"
        if switch_side:
            sh("ip", "link", "set", member.wire_switch_if, state)
        if partner_side:
            sh("ip", "link", "set", member.wire_partner_if, state)

    def ovs_bond(
        self, br: str, members: list[Member], *, mode: str = "active", fast: bool = True, bfd: bool = False,
        min_tx: int = BFD_INTERVAL_MS, min_rx: int = BFD_INTERVAL_MS,
    ) -> str:
        """An Open vSwitch LACP bond over the members' partner interfaces, then normal switching.

        With ``bfd`` the partner runs BFD on each member interface (``ovs_bfd``): Open vSwitch
        then takes a member out of the bond whenever its BFD session is not forwarding.
        """
        ifs = [m.partner_if for m in members]
        bond = self.name("bond")
        sh(
            "ovs-vsctl", "add-bond", br, bond, *ifs, f"lacp={mode}",
            f"other_config:lacp-time={'fast' if fast else 'slow'}", "bond_mode=balance-slb",
        )
        if bfd:
            ovs_bfd(ifs, min_tx=min_tx, min_rx=min_rx)
        sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", br, "actions=NORMAL")
        return bond

    # ---- controller -------------------------------------------------------------
    def controller(
        self, db: Path, *extra: str, log: Path, of_port: int | None = None, api_port: int | None = None
    ) -> tuple[subprocess.Popen, int, int]:
        """Start ``ryu-lag`` (on free loopback ports unless given); returns (process, OpenFlow port, REST port)."""
        return self.ryu_lag("--lag-db", str(db), *extra, log=log, of_port=of_port, api_port=api_port)

    def ryu_lag(
        self, *args: str, log: Path, of_port: int | None = None, api_port: int | None = None
    ) -> tuple[subprocess.Popen, int, int]:
        """Start ``ryu-lag ARGS`` (no ``--lag-db`` unless in ``args``) on free loopback ports unless given;
        returns (process, OpenFlow port, REST port) once it listens for switches."""
        of_port = of_port or free_port()
        api_port = api_port or free_port()
        proc = subprocess.Popen(
            [str(VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(of_port), "--wsapi-port", str(api_port), *args],
            stdout=log.open("a"), stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        wait_for(lambda: _listening(of_port) or proc.poll() is not None, 20, f"ryu-lag listening on {of_port}")
        if proc.poll() is not None:
            raise RuntimeError(f"ryu-lag exited ({proc.returncode}); see {log}")
        return proc, of_port, api_port

    def restart(self, proc: subprocess.Popen, sig: int, of_port: int, log: Path) -> tuple[subprocess.Popen, float]:
        """Stop ``proc`` with ``sig`` and start its command line again at once, writing to ``log``.

        Returns the new process, listening on ``of_port``, and how many seconds the old
        one took to exit after the signal (it gets 10 s, then SIGKILL).
        """
        signalled = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stopped = time.monotonic() - signalled
        with log.open("a") as out:
            new = subprocess.Popen(proc.args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(new)
        wait_for(lambda: _listening(of_port) or new.poll() is not None, 20, f"restarted controller on {of_port}", 0.02)
        if new.poll() is not None:
            raise RuntimeError(f"the restarted controller exited ({new.returncode}); see {log}")
        return new, stopped

    def relay(self, target: int) -> TcpRelay:
        """A ``TcpRelay`` on a free loopback port to 127.0.0.1:``target``, closed by ``close()``."""
        relay = TcpRelay(target)
        self.relays.append(relay)
        return relay

    def tap(self, target: int) -> OpenFlowTap:
        """An ``OpenFlowTap`` on a free loopback port to 127.0.0.1:``target``, closed by ``close()``."""
        tap = OpenFlowTap(target)
        self.relays.append(tap)
        return tap

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for br in self.bridges:
            sh("ovs-vsctl", "--if-exists", "del-br", br, check=False)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ovs_bfd(ifnames: list[str], *, min_tx: int = BFD_INTERVAL_MS, min_rx: int = BFD_INTERVAL_MS) -> None:
    """Run Open vSwitch's BFD on interfaces ``ifnames`` (its encapsulation, multiplier 3; intervals in ms)."""
    args = ["ovs-vsctl"]
    for ifname in ifnames:
        args += ["--", "set", "interface", ifname, "bfd:enable=true", f"bfd:min_tx={min_tx}", f"bfd:min_rx={min_rx}"]
    sh(*args)


def _show_fields(lines: list[str]) -> dict[str, str]:
    """``Key Words: value`` lines as ``{"key_words": "value"}``."""
    fields: dict[str, str] = {}
    for line in lines:
        match = re.match(r"^([A-Za-z][\w -]*?):\s*(.*)$", line.strip())
        if match:
            fields[match.group(1).lower().replace(" ", "_").replace("-", "_")] = match.group(2).strip()
    return fields


def bfd_show(ifname: str) -> dict[str, str]:
    """``ovs-appctl bfd/show IF``: its fields (``forwarding``, ``local_session_state``, ``remote_discriminator``...).

    Empty when the interface runs no BFD (or does not exist).
    """
    return _show_fields(sh("ovs-appctl", "bfd/show", ifname, check=False).splitlines())


def bond_show(bond: str) -> str:
    return sh("ovs-appctl", "bond/show", bond, check=False)


def parse_bond_show(text: str) -> dict:
    """``ovs-appctl bond/show``: the bond's fields (``lacp_status``...) and, per member, ``status``
    (enabled/disabled), ``may_enable`` and ``active`` (whether it is the active member)."""
    head: list[str] = []
    members: dict[str, dict] = {}
    current: dict | None = None
    for line in text.splitlines():
        member = re.match(r"^(?:slave|member) (\S+): (\w+)", line)
        if member:
            current = members[member.group(1)] = {"status": member.group(2), "active": False}
        elif current is None:
            head.append(line)
        elif line.strip() in ("active slave", "active member"):
            current["active"] = True
        else:
            current.update(_show_fields([line]))
    return {**_show_fields(head), "members": members}


def lacp_show(bond: str) -> str:
    return sh("ovs-appctl", "lacp/show", bond, check=False)


def parse_lacp_show(text: str) -> dict:
    """``ovs-appctl lacp/show``: the bond's status and, per member, its fields (``partner_state``...)."""
    status = re.search(r"^\s*status: (.*)$", text, re.M)
    members: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        head = re.match(r"^(?:slave|member): (\S+): (.*)$", line.strip())
        if head:
            current = members[head.group(1)] = {"status": head.group(2)}
            continue
        field_ = re.match(r"^(\w[\w ]*): (.*)$", line.strip())
        if current is not None and field_:
            current[field_.group(1).replace(" ", "_")] = field_.group(2)
    return {"status": status.group(1) if status else "", "members": members}


def ping_gaps(output: str) -> tuple[int, int, float]:
    """From ``ping -D`` output: (sent, received, largest gap between replies in ms)."""
    times = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\].*bytes from", output, re.M)]
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    gaps = [b - a for a, b in zip(times, times[1:])]
    return (int(sent.group(1)), int(sent.group(2)), max(gaps, default=0.0) * 1000) if sent else (0, 0, 0.0)


class TcpRelay:
    """A TCP relay on 127.0.0.1:``port`` to 127.0.0.1:``target``, to cut a connection on demand.

    ``cut()`` closes every relayed connection (both ends see it close) and refuses new
    ones until ``restore()``: to the switch the controller is gone, to the controller the
    switch is. All socket work happens in one thread; ``cut`` and ``restore`` return once
    it is done. A side that stops reading stalls the relay: fine for OpenFlow-sized traffic.
    """

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.accepted = 0  # connections relayed so far
        self._selector = selectors.DefaultSelector()
        self._wake_rx, self._wake_tx = socket.socketpair()
        self._selector.register(self._wake_rx, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._listener: socket.socket | None = None
        self._pending: list[tuple[object, threading.Event]] = []
        self._lock = threading.Lock()
        self._running = True
        self._listen()
        self._thread = threading.Thread(target=self._loop, name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones."""
        self._call(self._cut)

    def restore(self) -> None:
        """Accept and relay connections again."""
        self._call(self._listen)

    def close(self) -> None:
        """Cut, and stop the relay's thread."""
        if self._running:
            self._call(self._cut)
            self._running = False
            self._wake_tx.send(b"x")
            self._thread.join(5)
            self._selector.close()
            self._wake_rx.close()
            self._wake_tx.close()

    # ---- the relay's thread -------------------------------------------------------
    def _call(self, action) -> None:
        done = threading.Event()
        with self._lock:
            self._pending.append((action, done))
        self._wake_tx.send(b"x")
        if not done.wait(5):
            raise RuntimeError(f"relay {self.port} did not act within 5 s")

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)

    def _cut(self) -> None:
        for sock in list(self._peers):
            self._drop(sock)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for one in (sock, peer):
            if one is not None:
                self._peers.pop(one, None)
                try:
                    self._selector.unregister(one)
                except (KeyError, ValueError):
                    pass
                one.close()

    def _accept(self) -> None:
        assert self._listener is not None
        downstream, _ = self._listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=1.0)
        except OSError:
            downstream.close()  # nothing listens behind the relay: the switch sees a refusal-like close
            return
        for sock in (downstream, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[downstream], self._peers[upstream] = upstream, downstream
        self.accepted += 1
        self._opened(downstream, upstream)

    def _opened(self, downstream: socket.socket, upstream: socket.socket) -> None:
        """Called (in the relay's thread) for each connection relayed; ``downstream`` is the dialling side."""

    def _passing(self, sock: socket.socket, data: bytes) -> bytes:
        """Called (in the relay's thread) with each chunk read from ``sock``: what to pass on to its peer."""
        return data

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
            if data:
                self._peers[sock].sendall(self._passing(sock, data))
                return
        except OSError:
            pass
        self._drop(sock)

    def _loop(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=1.0):
                sock = key.fileobj
                if sock is self._wake_rx:
                    self._wake_rx.recv(4096)
                    with self._lock:
                        pending, self._pending = self._pending, []
                    for action, done in pending:
                        action()  # type: ignore[operator]
                        done.set()
                    break  # the registrations may have changed under the remaining keys
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._forward(sock)  # type: ignore[arg-type]


@dataclass(frozen=True)
class OpenFlowMessage:
    """One OpenFlow message an ``OpenFlowTap`` relayed (or withheld)."""

    stamp: float  # epoch seconds the tap read it whole
    from_switch: bool
    connection: int  # which relayed connection carried it (1 = the first the tap accepted)
    type: int
    xid: int
    raw: bytes  # the whole message, header included


class OpenFlowTap(TcpRelay):
    """A ``TcpRelay`` between a switch and its controller that passes on whole OpenFlow messages
    and records each one, in both directions: ``messages`` (appended by the relay's thread).

    A message for which ``withhold`` (settable at any time) is true is not passed on; it goes
    to ``withheld`` instead.
    """

    def __init__(self, target: int, port: int | None = None) -> None:
        self.messages: list[OpenFlowMessage] = []
        self.withheld: list[OpenFlowMessage] = []
        self.withhold: Callable[[OpenFlowMessage], bool] | None = None
        self._streams: dict[socket.socket, tuple[bool, int, bytearray]] = {}
        super().__init__(target, port)

    def _opened(self, downstream: socket.socket, upstream: socket.socket) -> None:
        self._streams[downstream] = (True, self.accepted, bytearray())
        self._streams[upstream] = (False, self.accepted, bytearray())

    def _passing(self, sock: socket.socket, data: bytes) -> bytes:
        stream = self._streams.get(sock)
        if stream is None:
            return data
        from_switch, connection, pending = stream
        pending += data
        passed = bytearray()
        while len(pending) >= 8:
            length = int.from_bytes(pending[2:4], "big")
            if length < 8:  # not OpenFlow: pass the rest on as it comes, unread
                del self._streams[sock]
                return bytes(passed + pending)
            if len(pending) < length:
                break
            raw = bytes(pending[:length])
            del pending[:length]
            xid = int.from_bytes(raw[4:8], "big")
            message = OpenFlowMessage(time.time(), from_switch, connection, raw[1], xid, raw)
            withhold = self.withhold
            if withhold is not None and withhold(message):
                self.withheld.append(message)
            else:
                self.messages.append(message)
                passed += raw
        return bytes(passed)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        for one in (sock, peer):
            self._streams.pop(one, None)  # type: ignore[arg-type]
        super()._drop(sock)


class LacpWatch:
    """``ovs-appctl lacp/show BOND`` every ``interval`` seconds in a thread, until ``stop()``."""

    def __init__(self, bond: str, interval: float = 0.05) -> None:
        self.bond = bond
        self.interval = interval
        self.samples: list[tuple[float, dict]] = []  # (epoch seconds, parse_lacp_show)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"lacp-watch-{bond}", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), parse_lacp_show(lacp_show(self.bond))))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, dict]]:
        """Stop polling; every sample taken."""
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def lapses(self) -> list[str]:
        """One line per sample in which the bond was not negotiated or a member was not current."""
        out = []
        for stamp, show in self.samples:
            stale = {name: m["status"] for name, m in show["members"].items() if not m["status"].startswith("current")}
            if "negotiated" not in show["status"] or stale:
                out.append(f"{stamp:.3f}: status {show['status']!r}, members not current: {stale}")
        return out


class LacpduCapture:
    """``tcpdump`` of the LACPDUs arriving on interface ``ifname`` (direction in), until ``stop()``.

    On a member's wire interface facing the switch (``Member.wire_switch_if``) that is every
    LACPDU the switch put on the wire, and nothing the partner sent.
    """

    def __init__(self, ifname: str) -> None:
        self.stamps: list[float] = []  # epoch seconds of each LACPDU
        self._proc = subprocess.Popen(
            ["tcpdump", "-i", ifname, "-Q", "in", "-n", "-l", "-tt", "--immediate-mode", "ether", "proto", "0x8809"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self._proc.stderr is not None
        said = ""
        while "listening on" not in said:  # tcpdump says so once the capture runs
            line = self._proc.stderr.readline()
            if not line:
                self._proc.wait(5)
                raise RuntimeError(f"tcpdump on {ifname} did not start: {said.strip()}")
            said += line
        self._thread = threading.Thread(target=self._read, name=f"lacpdu-capture-{ifname}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            stamp = re.match(r"^(\d+\.\d+) ", line)
            if stamp:
                self.stamps.append(float(stamp.group(1)))

    def stop(self) -> list[float]:
        """End the capture; the time of every LACPDU captured."""
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._thread.join(5)
        return self.stamps

    def between(self, start: float, end: float) -> list[float]:
        """The LACPDUs captured from ``start`` to ``end`` (epoch seconds)."""
        return [stamp for stamp in self.stamps if start <= stamp < end]
