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
from dataclasses import dataclass, field
from typing import Self

from benchmarks import common
from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore
from ryu_lag.stores import sqlite_url

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


def message_count(data: bytes) -> int:
    """How many OpenFlow messages ``data`` holds (whole messages, back to back)."""
    count = offset = 0
    while offset + HEADER.size <= len(data):
        offset += max(HEADER.size, (data[offset + 2] << 8) | data[offset + 3])
        count += 1
    return count


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


# ---- one switch, several controllers: OpenFlow 1.3 roles ---------------------------------
OFPCR_ROLE_NOCHANGE, OFPCR_ROLE_EQUAL, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE = 0, 1, 2, 3
OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE, OFPRRFC_BAD_ROLE = 11, 0, 2
OFPBRC_IS_SLAVE = 10
ONF_EXPERIMENTER, ONFT_ROLE_STATUS, OFPCRR_MASTER_REQUEST = 0x4F4E4600, 1911, 0
ROLE_NAMES = {OFPCR_ROLE_EQUAL: "equal", OFPCR_ROLE_MASTER: "master", OFPCR_ROLE_SLAVE: "slave"}
_ROLE = struct.Struct("!I4xQ")  # role, pad, generation_id (ROLE_REQUEST and ROLE_REPLY)
_ASYNC = struct.Struct("!6I")  # packet-in, port-status, flow-removed masks: (master/equal, slave) each
_ROLE_STATUS = struct.Struct("!IIIB3xQ")  # experimenter, exp_type, role, reason, pad, generation_id
_SLAVE_REFUSED = frozenset({OFPT.PACKET_OUT, OFPT.FLOW_MOD, OFPT.GROUP_MOD, OFPT.PORT_MOD, OFPT.TABLE_MOD,
                            OFPT.METER_MOD})
"""What a SLAVE connection may not send: the switch refuses it with BAD_REQUEST/IS_SLAVE."""
DEFAULT_ASYNC = ((0b111, 0), (0b111, 0b111), (0b1111, 0))
"""OpenFlow 1.3's asynchronous config of a new connection, (master/equal mask, slave mask) for
packet-ins, port status and flow removals: a master or equal gets everything, a slave port status only."""
_UNDEFINED_GENERATION = 0xFFFFFFFFFFFFFFFF  # what a ROLE_REPLY carries before any generation was seen


def stale(generation: int, newest: int) -> bool:
    """Whether ``generation`` is older than ``newest``: OpenFlow 1.3's wrapping signed 64-bit distance."""
    distance = (generation - newest) & 0xFFFFFFFFFFFFFFFF
    return distance >= 1 << 63


@dataclass(frozen=True)
class RoleChange:
    """A role the switch granted: when, to which controller (its index), and the generation it carried."""

    time: float
    controller: int
    role: int
    generation: int


class RoleConnection(EmuSwitch):
    """One controller's connection to a :class:`ClusterSwitch`: EmuSwitch's answers, plus the
    connection's role (EQUAL at first) and asynchronous config as OpenFlow 1.3 keeps them.

    A SLAVE's writes are refused (BAD_REQUEST/IS_SLAVE); everything else goes to EmuSwitch's
    handling. Accepted PACKET_OUTs go to the switch's ``on_packet_out``.
    """

    def __init__(self, switch: ClusterSwitch, controller: int) -> None:
        super().__init__(switch.dpid, switch.ports, switch.meters)
        self.switch = switch
        self.controller = controller
        self.meter_table = switch.meter_table  # one meter table for the switch, whoever writes it
        self.role = OFPCR_ROLE_EQUAL
        self.role_since = time.monotonic()
        self.async_config = DEFAULT_ASYNC
        self.first_packet_out_as_master: float | None = None
        self.packet_ins_sent = 0
        self.writes_as_equal_beside_master = 0  # writes accepted as EQUAL while another connection was MASTER
        self.slave_refusals: list[tuple[str, float]] = []  # (message, seconds it had been SLAVE)
        self.closed = asyncio.Event()
        self.on_packet_out = self._packet_out

    def wants(self, mask_index: int, reason: int) -> bool:
        """Whether this connection gets an asynchronous message of kind ``mask_index`` (0: packet-in,
        1: port status, 2: flow removed) and ``reason``, given its role now."""
        masks = self.async_config[mask_index]
        return bool(masks[1 if self.role == OFPCR_ROLE_SLAVE else 0] >> reason & 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.switch.lost(self)

    def _packet_out(self, port: int, frame: bytes, now: float) -> None:
        if self.role == OFPCR_ROLE_MASTER and self.first_packet_out_as_master is None:
            self.first_packet_out_as_master = now
        if self.switch.on_packet_out is not None:
            self.switch.on_packet_out(port, frame, now)

    def _handle(self, msg: bytes, now: float) -> None:
        msg_type, xid = msg[1], int.from_bytes(msg[4:8], "big")
        if msg_type in _SLAVE_REFUSED:
            if self.role == OFPCR_ROLE_SLAVE:
                name = OFPT(msg_type).name
                self.counts[f"refused {name}"] += 1
                self.slave_refusals.append((name, now - self.role_since))
                self._error(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE, msg, xid, "IS_SLAVE")
                return
            if self.role == OFPCR_ROLE_EQUAL and self.switch.master() is not None:
                self.writes_as_equal_beside_master += 1
        elif msg_type == OFPT.ROLE_REQUEST:
            self.counts["ROLE_REQUEST"] += 1
            self.last_mod = now
            role, generation = _ROLE.unpack_from(msg, HEADER.size)
            self.switch.role_request(self, role, generation, msg, xid, now)
            return
        elif msg_type == OFPT.SET_ASYNC:
            self.counts["SET_ASYNC"] += 1
            self.last_mod = now
            masks = _ASYNC.unpack_from(msg, HEADER.size)
            self.async_config = ((masks[0], masks[1]), (masks[2], masks[3]), (masks[4], masks[5]))
            return
        elif msg_type == OFPT.GET_ASYNC_REQUEST:
            self.counts["GET_ASYNC_REQUEST"] += 1
            self.send(message(OFPT.GET_ASYNC_REPLY, _ASYNC.pack(*(m for pair in self.async_config for m in pair)), xid))
            return
        super()._handle(msg, now)

    def set_role(self, role: int, now: float) -> None:
        if role != self.role:
            self.role = role
            self.role_since = now
            if role == OFPCR_ROLE_MASTER:
                self.first_packet_out_as_master = None


class ClusterSwitch:
    """One emulated switch connected to several controllers, one :class:`RoleConnection` each,
    arbitrating their roles as an OpenFlow 1.3 switch does (Open vSwitch's rules):

    - ROLE_REQUEST MASTER or SLAVE carrying a generation id older than the newest the switch
      has seen (wrapping signed 64-bit distance) is refused with ROLE_REQUEST_FAILED/STALE;
      otherwise the generation becomes the newest. MASTER makes every other MASTER a SLAVE
      (and tells it with an ONF role-status message, as Open vSwitch does on OpenFlow 1.3).
      EQUAL and NOCHANGE ignore the generation. The reply carries the role and the newest
      generation.
    - Asynchronous messages go to each connection per its SET_ASYNC masks for its role now
      (:data:`DEFAULT_ASYNC` until it sends one).

    ``send`` sends PACKET_INs of reason ACTION (what ``lacp_scale``'s partners send) to every
    connection that takes them; ``on_packet_out`` sees the PACKET_OUTs the switch accepted
    (from a MASTER or EQUAL connection). ``role_changes`` logs every role granted.
    """

    def __init__(self, dpid: int, ports: Iterable[int], meters: Meters = Meters.NONE) -> None:
        self.dpid = dpid
        self.ports = sorted(ports)
        self.meters = meters
        self.meter_table: dict[int, tuple[int, bytes]] = {}
        self.connections: dict[int, RoleConnection] = {}  # by controller index: the current connection
        self.all_connections: list[RoleConnection] = []  # every connection attached so far, closed ones too
        self.generation: int | None = None  # the newest generation id seen
        self.role_changes: list[RoleChange] = []
        self.stale_refusals = 0
        self.on_packet_out: PacketOutHook | None = None
        self._dialers: dict[int, asyncio.Task[None]] = {}

    # ---- asynchronous messages ---------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Send PACKET_INs of reason ACTION (one or more messages) to every connection that takes them."""
        count = 0
        for conn in self.connections.values():
            if conn.wants(0, OFPR_ACTION):
                if not count:
                    count = message_count(data)
                conn.packet_ins_sent += count
                conn.send(data)

    def send_port_status(self, port: int, reason: int) -> None:
        msg = port_status(self.dpid, port, reason)
        for conn in self.connections.values():
            if conn.wants(1, reason):
                conn.send(msg)

    # ---- roles ---------------------------------------------------------------------------
    def master(self) -> int | None:
        """The index of the controller whose connection is MASTER now, or None."""
        for index, conn in self.connections.items():
            if conn.role == OFPCR_ROLE_MASTER:
                return index
        return None

    def roles(self) -> dict[int, str]:
        """Each connected controller's role now, by index."""
        return {index: ROLE_NAMES[conn.role] for index, conn in sorted(self.connections.items())}

    def role_request(self, conn: RoleConnection, role: int, generation: int, msg: bytes, xid: int,
                     now: float) -> None:
        if role not in (OFPCR_ROLE_NOCHANGE, OFPCR_ROLE_EQUAL, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE):
            conn._error(OFPET_ROLE_REQUEST_FAILED, OFPRRFC_BAD_ROLE, msg, xid, "ROLE_BAD_ROLE")
            return
        if role in (OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE):
            if self.generation is not None and stale(generation, self.generation):
                self.stale_refusals += 1
                conn._error(OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE, msg, xid, "ROLE_STALE")
                return
            self.generation = generation
        if role == OFPCR_ROLE_MASTER:
            for other in self.connections.values():
                if other is not conn and other.role == OFPCR_ROLE_MASTER:
                    other.set_role(OFPCR_ROLE_SLAVE, now)
                    other.send(message(OFPT.EXPERIMENTER, _ROLE_STATUS.pack(
                        ONF_EXPERIMENTER, ONFT_ROLE_STATUS, OFPCR_ROLE_SLAVE, OFPCRR_MASTER_REQUEST, generation)))
        if role != OFPCR_ROLE_NOCHANGE:
            if role != conn.role:
                self.role_changes.append(RoleChange(now, conn.controller, role, generation))
            conn.set_role(role, now)
        reply_generation = _UNDEFINED_GENERATION if self.generation is None else self.generation
        conn.send(message(OFPT.ROLE_REPLY, _ROLE.pack(conn.role, reply_generation), xid))

    # ---- connections ---------------------------------------------------------------------
    async def connect(self, controller: int, of_port: int) -> RoleConnection:
        """Connect to controller ``controller`` (an index of the caller's) on loopback ``of_port``."""
        conn = RoleConnection(self, controller)
        await asyncio.get_running_loop().create_connection(lambda: conn, "127.0.0.1", of_port)
        self.attach(conn)
        return conn

    def attach(self, conn: RoleConnection) -> None:
        """Make ``conn`` (connected) its controller's current connection, closing an older one."""
        old = self.connections.get(conn.controller)
        if old is not None and old is not conn and old.transport is not None:
            old.transport.close()
        self.connections[conn.controller] = conn
        self.all_connections.append(conn)

    def lost(self, conn: RoleConnection) -> None:
        """A connection closed: it has no role any more."""
        if self.connections.get(conn.controller) is conn:
            del self.connections[conn.controller]

    def dial(self, controller: int, of_port: int, redial: float = 0.2) -> None:
        """Keep a connection to controller ``controller`` up: connect, and again ``redial`` seconds after
        each loss or refusal, as a switch does (until :meth:`close`)."""
        async def keep() -> None:
            while True:
                try:
                    conn = await self.connect(controller, of_port)
                except OSError:
                    await asyncio.sleep(redial)
                    continue
                await conn.closed.wait()
                await asyncio.sleep(redial)

        self._dialers[controller] = asyncio.create_task(keep())

    def close(self) -> None:
        """Stop redialling and close every connection."""
        for task in self._dialers.values():
            task.cancel()
        self._dialers.clear()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()


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


def _spawn(args: list[str], log: pathlib.Path) -> subprocess.Popen:
    """Start ``args`` in the repository root, its output appended to ``log``."""
    with log.open("a") as out:
        return subprocess.Popen(args, cwd=common.ROOT, stdout=out, stderr=subprocess.STDOUT)


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
    args: list[str] = field(default_factory=list)  # the command line, for :meth:`start_again`

    @classmethod
    def ryu_lag(cls, workdir: pathlib.Path, bonds: Iterable[tuple[int, dict]] = (),
                extra_args: Iterable[str] = ()) -> Controller:
        """Start ``ryu-lag`` with ``bonds`` (``(dpid, body)`` pairs) in a fresh state file."""
        db = workdir / "ryu_lag.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(f"{db}{suffix}").unlink(missing_ok=True)
        store_bonds(db, bonds)
        return cls.ryu_lag_store(workdir, sqlite_url(str(db)), extra_args=extra_args)

    @classmethod
    def ryu_lag_store(cls, workdir: pathlib.Path, store_url: str, instance_id: str | None = None,
                      extra_args: Iterable[str] = ()) -> Controller:
        """Start ``ryu-lag --lag-store store_url`` (the bonds are already in the store); with
        ``instance_id``, as that cluster instance (``--lag-instance-id``). It logs into ``<name>.log`` in ``workdir``."""
        of_port, api_port = free_port(), free_port()
        name = f"ryu_lag-{instance_id}" if instance_id else "ryu_lag"
        args = [str(common.VENV_BIN / "ryu-lag"), "--ofp-tcp-listen-port", str(of_port),
                "--wsapi-port", str(api_port), "--lag-store", store_url, *extra_args]
        if instance_id:
            args += ["--lag-instance-id", instance_id]
        log = workdir / f"{name}.log"
        controller = cls(name, _spawn(args, log), of_port, log, api_port, args)
        try:
            controller._wait_listening(30.0)
        except Exception:
            controller.stop()
            raise
        return controller

    def start_again(self) -> None:
        """Start the same command line (same ports) once the process has exited; returns once it listens."""
        if self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        self.proc = _spawn(self.args, self.log)
        try:
            self._wait_listening(30.0)
        except Exception:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

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
