"""An emulated OpenFlow 1.3 switch for the benchmarks, and the controller processes it meets.

``EmuSwitch`` is an asyncio protocol speaking just enough OpenFlow 1.3 (struct-encoded,
no Ryu) to be set up by a controller: HELLO, FEATURES_REPLY, PORT_DESC (every port up,
plus LOCAL), METER_FEATURES and DESC replies, ECHO, BARRIER, GET_CONFIG and ROLE answers.
Everything the controller sends is counted by type; FLOW_MOD, PACKET_OUT and every other
message can be handed to hooks (a benchmark's or a test's own logic), and the switch sends
PACKET_IN and ECHO on demand.

Its meters are chosen per switch (``Meters``): none, packets-a-second meters, or meters that
count kbps only (which refuse a packets-a-second METER_MOD with METER_MOD_FAILED/BAD_FLAGS,
as such a switch does). It keeps the meters it was given and answers the reads a resuming
controller makes: FLOW stats (empty: it keeps no flow table), GROUP_DESC (empty: it keeps no
groups) and METER_CONFIG (the meters it holds); other multipart requests get BAD_MULTIPART.
It stands in for the switch's control channel only, and does as little per message as it
can, since it shares the CPU with the controller. ``stop_reading`` makes it stop reading
from the connection (its TCP window fills up), as a stuck switch does.

``Controller`` starts ``ryu-lag`` or the classic Ryu app as a subprocess on loopback and
reads its CPU time.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import os
import pathlib
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

from benchmarks import common
from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore

OFP_VERSION = 4
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_LOCAL = 0xFFFFFFFE
OFPR_NO_MATCH = 0
OFPR_ACTION = 1
OFPPS_LIVE = 4
OFPMPF_REPLY_MORE = 1
OFPET_BAD_REQUEST, OFPBRC_BAD_MULTIPART = 1, 2
OFPET_METER_MOD_FAILED, OFPMMFC_UNKNOWN_METER, OFPMMFC_BAD_FLAGS = 12, 3, 5
OFPMP_DESC, OFPMP_FLOW, OFPMP_GROUP_DESC, OFPMP_METER_CONFIG, OFPMP_METER_FEATURES, OFPMP_PORT_DESC = 0, 1, 7, 10, 11, 13
OFPMC_ADD, OFPMC_MODIFY, OFPMC_DELETE = 0, 1, 2
OFPMF_KBPS, OFPMF_PKTPS, OFPMF_BURST, OFPMF_STATS = 1, 2, 4, 8
OFPMBT_DROP = 1
OFPM_ALL = 0xFFFFFFFF
MAX_METERS = 65536
OXM_OF_IN_PORT = 0x80000004  # class OPENFLOW_BASIC, field IN_PORT, 4 octets
OXM_ETH_DST, OXM_ETH_SRC = 3, 4  # OpenFlow basic field numbers


class OFPT(enum.IntEnum):
    """OpenFlow 1.3 message types."""

    HELLO = 0
    ERROR = 1
    ECHO_REQUEST = 2
    ECHO_REPLY = 3
    EXPERIMENTER = 4
    FEATURES_REQUEST = 5
    FEATURES_REPLY = 6
    GET_CONFIG_REQUEST = 7
    GET_CONFIG_REPLY = 8
    SET_CONFIG = 9
    PACKET_IN = 10
    FLOW_REMOVED = 11
    PORT_STATUS = 12
    PACKET_OUT = 13
    FLOW_MOD = 14
    GROUP_MOD = 15
    PORT_MOD = 16
    TABLE_MOD = 17
    MULTIPART_REQUEST = 18
    MULTIPART_REPLY = 19
    BARRIER_REQUEST = 20
    BARRIER_REPLY = 21
    QUEUE_GET_CONFIG_REQUEST = 22
    QUEUE_GET_CONFIG_REPLY = 23
    ROLE_REQUEST = 24
    ROLE_REPLY = 25
    GET_ASYNC_REQUEST = 26
    GET_ASYNC_REPLY = 27
    SET_ASYNC = 28
    METER_MOD = 29


HEADER = struct.Struct("!BBHI")  # version, type, length, xid
_FEATURES = struct.Struct("!QIBB2xII")  # datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved
_MULTIPART = struct.Struct("!HH4x")  # type, flags
_PORT = struct.Struct("!I4x6s2x16sIIIIIIII")  # ofp_port, 64 octets
_METER_FEATURES = struct.Struct("!IIIBB2x")  # max_meter, band_types, capabilities, max_bands, max_color
_METER_MOD = struct.Struct("!HHI")  # command, flags, meter_id (bands follow)
_METER_CONFIG = struct.Struct("!HHI")  # length, flags, meter_id (bands follow)
_PACKET_IN = struct.Struct("!IHBBQ")  # buffer_id, total_len, reason, table_id, cookie
_IN_PORT_MATCH = struct.Struct("!HHII4x")  # OXM match holding in_port only, padded to 16
_PACKET_OUT = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len
_ACTION_HEADER = struct.Struct("!HHI")  # type, len, port (of an OUTPUT action)
_OXM = struct.Struct("!I")
_ERROR = struct.Struct("!HH")
_FLOW_MOD_MATCH_OFFSET = 48  # header 8 + fixed flow_mod fields 40
_PORTS_PER_REPLY = 1000  # 64 octets each: one multipart reply stays under 64 KiB
N_TABLES = 254
_PORT_FEATURES = 0x840  # 10 Gb full duplex, copper
_PORT_SPEED_KBPS = 10_000_000


def message(msg_type: int, body: bytes = b"", xid: int = 0) -> bytes:
    """One OpenFlow 1.3 message: header and ``body``."""
    return HEADER.pack(OFP_VERSION, msg_type, HEADER.size + len(body), xid) + body


def port_mac(dpid: int, port: int) -> bytes:
    """The emulated MAC of ``port`` on switch ``dpid`` (locally administered, unique per switch and port)."""
    return bytes([0x0E, (dpid >> 16) & 0xFF, (dpid >> 8) & 0xFF, dpid & 0xFF, (port >> 8) & 0xFF, port & 0xFF])


def mac_text(raw: bytes) -> str:
    """Six octets as ``aa:bb:cc:dd:ee:ff``."""
    return raw.hex(":")


def encode_port(dpid: int, port: int) -> bytes:
    """An ``ofp_port`` description of ``port``, link up."""
    name = ("local" if port == OFPP_LOCAL else f"s{dpid}-eth{port}").encode()[:15]
    return _PORT.pack(port, port_mac(dpid, port), name, 0, OFPPS_LIVE, _PORT_FEATURES, _PORT_FEATURES,
                      _PORT_FEATURES, 0, _PORT_SPEED_KBPS, _PORT_SPEED_KBPS)


OFPPR_ADD, OFPPR_DELETE = 0, 1


def port_status(dpid: int, port: int, reason: int) -> bytes:
    """A PORT_STATUS saying ``port`` was added (OFPPR_ADD, link up) or deleted (OFPPR_DELETE)."""
    return message(OFPT.PORT_STATUS, bytes([reason]) + bytes(7) + encode_port(dpid, port))


def packet_in(in_port: int, frame: bytes, reason: int = OFPR_NO_MATCH, xid: int = 0) -> bytes:
    """A PACKET_IN of ``frame`` from ``in_port``: no buffer, match on in_port only."""
    body = (_PACKET_IN.pack(OFP_NO_BUFFER, len(frame), reason, 0, 0)
            + _IN_PORT_MATCH.pack(1, 12, OXM_OF_IN_PORT, in_port) + b"\0\0" + frame)
    return message(OFPT.PACKET_IN, body, xid)


def parse_packet_out(msg: bytes) -> tuple[int, bytes]:
    """(output port, frame) of a PACKET_OUT; OFPP_IN_PORT resolves to its in_port, no output gives 0."""
    _, in_port, actions_len = _PACKET_OUT.unpack_from(msg, HEADER.size)
    start = HEADER.size + _PACKET_OUT.size
    out_port, offset = 0, start
    while offset < start + actions_len:
        action_type, length, port = _ACTION_HEADER.unpack_from(msg, offset)
        if action_type == 0:  # OUTPUT
            out_port = in_port if port == OFPP_IN_PORT else port
            break
        offset += length
    return out_port, msg[start + actions_len:]


def flow_mod_macs(msg: bytes) -> tuple[bytes | None, bytes | None]:
    """(eth_src, eth_dst) values a FLOW_MOD's match holds, each None when absent."""
    match_len = struct.unpack_from("!H", msg, _FLOW_MOD_MATCH_OFFSET + 2)[0]
    offset, end = _FLOW_MOD_MATCH_OFFSET + 4, _FLOW_MOD_MATCH_OFFSET + match_len
    src = dst = None
    while offset + 4 <= end:
        (oxm,) = _OXM.unpack_from(msg, offset)
        if oxm >> 16 == 0x8000:
            fld = (oxm >> 9) & 0x7F
            if fld == OXM_ETH_SRC:
                src = msg[offset + 4:offset + 10]
            elif fld == OXM_ETH_DST:
                dst = msg[offset + 4:offset + 10]
        offset += 4 + (oxm & 0xFF)
    return src, dst


class Meters(enum.Enum):
    """What meters an emulated switch has."""

    NONE = "none"
    PKTPS = "pktps"  # packets a second or kbps, drop bands: what ryu_lag's punt meters need
    KBPS_ONLY = "kbps"  # kbps only: a packets-a-second meter is refused


PacketOutHook = Callable[[int, bytes, float], None]
"""Called with (output port, frame, receive time) for each PACKET_OUT."""
FlowModHook = Callable[[bytes, float], None]
"""Called with (the whole FLOW_MOD, receive time) for each FLOW_MOD."""
MessageHook = Callable[[bytes, float], None]
"""Called with (the whole message, receive time) for each message but PACKET_OUT."""


class EmuSwitch(asyncio.Protocol):
    """One emulated switch on one TCP connection to the controller."""

    def __init__(self, dpid: int, ports: Iterable[int], meters: Meters = Meters.NONE) -> None:
        self.dpid = dpid
        self.ports = sorted(ports)
        self.meters = meters
        self.meter_table: dict[int, tuple[int, bytes]] = {}  # meter id -> (flags, bands) as the controller sent them
        self.errors_sent: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.on_packet_out: PacketOutHook | None = None
        self.on_flow_mod: FlowModHook | None = None
        self.on_message: MessageHook | None = None
        self.last_mod = 0.0  # when the controller last sent anything but PACKET_OUT
        self.described = asyncio.Event()  # the port description was sent
        self.echo_rtts: list[float] = []
        self._echo_sent: dict[int, float] = {}
        self._next_xid = 1
        self._buf = b""
        self._out: list[bytes] | None = None  # batched writes while handling received data
        self.transport: asyncio.Transport | None = None

    # ---- sending -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Send bytes (one or more messages); batched when called from a hook."""
        if self._out is not None:
            self._out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def stop_reading(self) -> None:
        """Read nothing more: what the controller sends piles up until its writes block."""
        if self.transport is not None:
            self.transport.pause_reading()

    def send_packet_in(self, in_port: int, frame: bytes) -> None:
        self.send(packet_in(in_port, frame))

    def send_echo(self) -> None:
        """An ECHO_REQUEST; its round trip lands in ``echo_rtts`` (it queues behind our packet-ins)."""
        xid = self._xid()
        self._echo_sent[xid] = time.monotonic()
        self.send(message(OFPT.ECHO_REQUEST, b"", xid))

    def _xid(self) -> int:
        self._next_xid = (self._next_xid + 1) & 0xFFFFFFFF
        return self._next_xid

    # ---- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection's is a Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(message(OFPT.HELLO, b"", self._xid()))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self._buf + data if self._buf else data
        self._out = []
        offset, size = 0, len(buf)
        try:
            while size - offset >= 8:
                length = (buf[offset + 2] << 8) | buf[offset + 3]
                if length < 8:
                    raise ValueError(f"bad OpenFlow length {length}")
                if size - offset < length:
                    break
                self._handle(buf[offset:offset + length], now)
                offset += length
        finally:
            self._buf = buf[offset:]
            out, self._out = self._out, None
            if out:
                self.send(b"".join(out))

    # ---- received messages ----------------------------------------------------------
    def _handle(self, msg: bytes, now: float) -> None:
        msg_type, xid = msg[1], int.from_bytes(msg[4:8], "big")
        if msg_type == OFPT.PACKET_OUT:
            self.counts["PACKET_OUT"] += 1
            if self.on_packet_out is not None:
                port, frame = parse_packet_out(msg)
                self.on_packet_out(port, frame, now)
            return
        self.last_mod = now
        if self.on_message is not None:
            self.on_message(msg, now)
        if msg_type == OFPT.FLOW_MOD:
            self.counts["FLOW_MOD"] += 1
            if self.on_flow_mod is not None:
                self.on_flow_mod(msg, now)
            return
        try:
            name = OFPT(msg_type).name
        except ValueError:
            name = f"type_{msg_type}"
        self.counts[name] += 1
        if msg_type == OFPT.FEATURES_REQUEST:
            body = _FEATURES.pack(self.dpid, 0, N_TABLES, 0, 0x0F, 0)
            self.send(message(OFPT.FEATURES_REPLY, body, xid))
        elif msg_type == OFPT.MULTIPART_REQUEST:
            self._multipart(msg, xid)
        elif msg_type == OFPT.ECHO_REQUEST:
            self.send(message(OFPT.ECHO_REPLY, msg[8:], xid))
        elif msg_type == OFPT.ECHO_REPLY:
            sent = self._echo_sent.pop(xid, None)
            if sent is not None:
                self.echo_rtts.append(now - sent)
        elif msg_type == OFPT.BARRIER_REQUEST:
            self.send(message(OFPT.BARRIER_REPLY, b"", xid))
        elif msg_type == OFPT.GET_CONFIG_REQUEST:
            self.send(message(OFPT.GET_CONFIG_REPLY, struct.pack("!HH", 0, 0xFFFF), xid))
        elif msg_type == OFPT.ROLE_REQUEST:
            self.send(message(OFPT.ROLE_REPLY, msg[8:], xid))
        elif msg_type == OFPT.METER_MOD:
            self._meter_mod(msg, xid)

    def _error(self, error_type: int, code: int, msg: bytes, xid: int, name: str) -> None:
        self.errors_sent[name] += 1
        self.send(message(OFPT.ERROR, _ERROR.pack(error_type, code) + msg[:64], xid))

    def _meter_mod(self, msg: bytes, xid: int) -> None:
        command, flags, meter_id = _METER_MOD.unpack_from(msg, HEADER.size)
        if self.meters is Meters.NONE:
            self._error(OFPET_METER_MOD_FAILED, OFPMMFC_UNKNOWN_METER, msg, xid, "METER_MOD_FAILED")
        elif command == OFPMC_DELETE:
            if meter_id == OFPM_ALL:
                self.meter_table.clear()
            else:
                self.meter_table.pop(meter_id, None)
        elif self.meters is Meters.KBPS_ONLY and flags & OFPMF_PKTPS:
            self._error(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_FLAGS, msg, xid, "METER_MOD_FAILED")
        elif command in (OFPMC_ADD, OFPMC_MODIFY):
            self.meter_table[meter_id] = (flags, msg[HEADER.size + _METER_MOD.size:])

    def _multipart(self, msg: bytes, xid: int) -> None:
        mp_type, _ = _MULTIPART.unpack_from(msg, HEADER.size)
        if mp_type == OFPMP_PORT_DESC:
            descs = [encode_port(self.dpid, p) for p in [*self.ports, OFPP_LOCAL]]
            chunks = [descs[i:i + _PORTS_PER_REPLY] for i in range(0, len(descs), _PORTS_PER_REPLY)]
            for i, chunk in enumerate(chunks):
                flags = OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0
                self.send(message(OFPT.MULTIPART_REPLY, _MULTIPART.pack(mp_type, flags) + b"".join(chunk), xid))
            self.described.set()
        elif mp_type == OFPMP_METER_FEATURES:
            if self.meters is Meters.NONE:
                body = _METER_FEATURES.pack(0, 0, 0, 0, 0)
            else:
                rates = OFPMF_PKTPS | OFPMF_KBPS if self.meters is Meters.PKTPS else OFPMF_KBPS
                body = _METER_FEATURES.pack(MAX_METERS, 1 << OFPMBT_DROP, rates | OFPMF_BURST | OFPMF_STATS, 1, 0)
            self.send(message(OFPT.MULTIPART_REPLY, _MULTIPART.pack(mp_type, 0) + body, xid))
        elif mp_type in (OFPMP_FLOW, OFPMP_GROUP_DESC):
            self.send(message(OFPT.MULTIPART_REPLY, _MULTIPART.pack(mp_type, 0), xid))  # holds none
        elif mp_type == OFPMP_METER_CONFIG:
            body = b"".join(_METER_CONFIG.pack(_METER_CONFIG.size + len(bands), flags, meter_id) + bands
                            for meter_id, (flags, bands) in sorted(self.meter_table.items()))
            self.send(message(OFPT.MULTIPART_REPLY, _MULTIPART.pack(mp_type, 0) + body, xid))
        elif mp_type == OFPMP_DESC:
            texts = (b"ryu_lag benchmarks", b"emulated switch", b"ofswitch_emu", b"0", b"emulated")
            sizes = (256, 256, 256, 32, 256)
            body = b"".join(t.ljust(n, b"\0") for t, n in zip(texts, sizes))
            self.send(message(OFPT.MULTIPART_REPLY, _MULTIPART.pack(mp_type, 0) + body, xid))
        else:
            self._error(OFPET_BAD_REQUEST, OFPBRC_BAD_MULTIPART, msg, xid, "BAD_MULTIPART")


async def connect(dpid: int, ports: Iterable[int], of_port: int, meters: Meters = Meters.NONE,
                  receive_buffer: int | None = None) -> EmuSwitch:
    """Connect one emulated switch to the controller on loopback; returns once the connection is up.

    ``receive_buffer``: the socket's SO_RCVBUF (a small one makes ``stop_reading`` bite soon).
    """
    switch = EmuSwitch(dpid, ports, meters)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", of_port))
    except BaseException:
        sock.close()
        raise
    await asyncio.get_running_loop().create_connection(lambda: switch, sock=sock)
    return switch


async def wait_described(switches: Iterable[EmuSwitch], timeout: float) -> None:
    """Wait until the controller has read every switch's port description."""
    await asyncio.wait_for(asyncio.gather(*(s.described.wait() for s in switches)), timeout)


async def wait_quiet(switches: list[EmuSwitch], quiet: float, timeout: float) -> None:
    """Wait until the controller has sent no message but PACKET_OUTs to any switch for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = max((s.last_mod for s in switches), default=0.0)
        idle = time.monotonic() - last
        if idle >= quiet:
            return
        await asyncio.sleep(quiet - idle)
    raise TimeoutError(f"the controller kept sending for {timeout:.0f} s")


# ---- the controllers under test --------------------------------------------------------
def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_bonds(db: pathlib.Path, bonds: Iterable[tuple[int, dict]]) -> None:
    """Write bonds straight into a ryu-lag state file before the controller starts (keys 1, 2, ... per switch)."""
    store = BondStore(str(db))
    keys: collections.Counter[int] = collections.Counter()
    try:
        for dpid, data in bonds:
            keys[dpid] += 1
            store.put(BondConfig.from_dict(dpid, data, key=keys[dpid]))
    finally:
        store.close()


@dataclass
class Controller:
    """A controller process on loopback: ``ryu-lag`` or the classic Ryu app.

    Both log at Ryu's default level (INFO) into ``log``, a file in the work directory.
    """

    name: str
    proc: subprocess.Popen
    of_port: int
    log: pathlib.Path
    api_port: int | None = None

    @classmethod
    def ryu_lag(cls, workdir: pathlib.Path, bonds: Iterable[tuple[int, dict]] = (),
                extra_args: Iterable[str] = ()) -> Controller:
        """Start ``ryu-lag`` with ``bonds`` (``(dpid, body)`` pairs) in a fresh state file."""
        db = workdir / "ryu_lag.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(f"{db}{suffix}").unlink(missing_ok=True)
        store_bonds(db, bonds)
        of_port, api_port = free_port(), free_port()
        log = workdir / "ryu_lag.log"
        args = [str(common.VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(of_port),
                "--wsapi-port", str(api_port), "--lag-db", str(db), *extra_args]
        with log.open("a") as out:
            proc = subprocess.Popen(args, cwd=common.ROOT, stdout=out, stderr=subprocess.STDOUT)
        controller = cls("ryu_lag", proc, of_port, log, api_port)
        try:
            controller._wait_listening(30.0)
        except Exception:
            controller.stop()
            raise
        return controller

    @classmethod
    def classic(cls, workdir: pathlib.Path, bonds: str) -> Controller:
        """Start the classic app (Ryu's lacplib and the book's switch); ``bonds`` as CLASSIC_LACP_BONDS."""
        of_port = free_port()
        log = workdir / "classic.log"
        return cls("classic", common.start_classic_ryu(of_port, log, bonds, timeout=30.0), of_port, log)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for port in (self.of_port, self.api_port):
            while port is not None and not common.listening(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} does not listen on {port}; see {self.log}")
                time.sleep(0.1)

    def cpu(self) -> float:
        """CPU seconds the controller has used so far."""
        return common.cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def own_cpu() -> float:
    """CPU seconds this process (the emulator) has used so far."""
    times = os.times()
    return times.user + times.system


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Profile:
    """``py-spy record`` of a process for a while, summed up as the functions that take the most time.

    Started when created; :meth:`summary` waits for py-spy and returns lines such as
    ``"52% ryu_lag.ofp_ryu:_match"``: inclusive shares of ryu_lag's and rest's own functions,
    then the largest self shares anywhere. Empty when py-spy is not installed.
    """

    OURS = ("ryu_lag/", "rest/")

    def __init__(self, pid: int, seconds: float, workdir: pathlib.Path) -> None:
        self.output = workdir / f"py-spy-{pid}-{time.monotonic_ns()}.txt"
        spy = common.VENV_BIN / "py-spy"
        self.proc = None
        if spy.exists():
            args = [str(spy), "record", "--format", "raw", "--rate", "100", "--duration", str(max(1, round(seconds))),
                    "--output", str(self.output), "--pid", str(pid)]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self, ours: int = 8, anywhere: int = 4) -> list[str]:
        if self.proc is None:
            return ["(py-spy not installed in the venv: no profile)"]
        self.proc.wait(timeout=120)
        if not self.output.exists():
            return ["(py-spy recorded nothing)"]
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [_frame_name(f) for f in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                if frame.startswith(self.OURS):
                    inclusive[frame] += int(count)
        if not total:
            return ["(py-spy recorded nothing)"]
        top = [f"{100 * n / total:.0f}% {f}" for f, n in inclusive.most_common(ours)]
        return top + [f"{100 * n / total:.0f}% self {f}" for f, n in own.most_common(anywhere)]


def _frame_name(frame: str) -> str:
    """``"_match (ryu_lag/ofp_ryu.py:36)"`` as ``"ryu_lag/ofp_ryu.py:_match"``."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        path = path.split(marker, 1)[-1]
    return f"{path}:{function.split('.<locals>')[0]}"
