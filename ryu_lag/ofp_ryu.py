"""Where ``ryu_lag.openflow`` values meet a Ryu datapath: sending them, and reading Ryu's port descriptions.

``Outbox`` is how the app writes to a switch: Ryu's ``Datapath.send`` blocks once 16 writes
wait, so each switch's writes wait in its own outbox, drained by its own green thread, and
one switch that stops reading blocks nobody.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import Any

from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3 as ofp

from ryu_lag import ofp_wire
from ryu_lag.openflow import Message, PacketOut

OUTBOX_MAX_PDUS = 64
"""LACPDU packet-outs waiting for one switch at most; past it the oldest are dropped and counted."""
OUTBOX_MAX_BYTES = 16 << 20
"""Bytes of flow, group and meter mods waiting for one switch at most; past it the switch is disconnected."""
OUTBOX_STUCK_TIMEOUT = 10.0
"""Seconds a switch may take no write while writes wait for it; then it is disconnected."""


def port_up(port: Any) -> bool:
    """Whether a Ryu OFPPort has its link up and is not administratively down."""
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)


def send(datapath: Any, msgs: Iterable[Message]) -> None:
    """Send ``msgs`` to ``datapath`` in order, as one write, with xids from the datapath's own counter."""
    buf, next_xid = ofp_wire.encode_all(msgs, (datapath.xid + 1) & ofp.MAX_XID)
    if buf:
        datapath.xid = (next_xid - 1) & ofp.MAX_XID
        datapath.send(buf)


class Outbox:
    """Writes waiting for one switch, in order, drained by their own green thread.

    Each item is one buffer of encoded messages, marked when it holds only LACPDU packet-outs
    (those may be dropped, oldest first, when the switch does not read).
    """

    def __init__(self, datapath: Any, on_drop: Callable[[], None]) -> None:
        self.datapath = datapath
        self.on_drop = on_drop
        self.items: collections.deque[tuple[bool, bytes]] = collections.deque()
        self.pdus = 0  # items that are LACPDU packet-outs only
        self.mod_bytes = 0
        self.writing_since: float | None = None  # when the write in progress started (it blocks while the switch reads nothing)
        self.closed = False
        self._wake = hub.Event()
        self.thread = hub.spawn(self._drain)

    def put_messages(self, msgs: list[Message]) -> None:
        """Queue ``msgs`` in order, with xids from the datapath's own counter: one write per run of
        packet-outs or of other messages. Never blocks."""
        datapath = self.datapath
        for pdus_only, run in _runs(msgs):
            buf, next_xid = ofp_wire.encode_all(run, (datapath.xid + 1) & ofp.MAX_XID)
            if buf:
                datapath.xid = (next_xid - 1) & ofp.MAX_XID
                self.put(pdus_only, buf)

    def put(self, pdus_only: bool, buf: bytes) -> None:
        self.items.append((pdus_only, buf))
        if pdus_only:
            self.pdus += 1
            if self.pdus > OUTBOX_MAX_PDUS:
                oldest = next(i for i, (p, _) in enumerate(self.items) if p)
                del self.items[oldest]
                self.pdus -= 1
                self.on_drop()
        else:
            self.mod_bytes += len(buf)
        self._wake.set()

    def stuck(self, now: float) -> str | None:
        """Why the switch should be disconnected, or None."""
        if self.mod_bytes > OUTBOX_MAX_BYTES:
            return f"{self.mod_bytes} bytes of flow, group and meter mods wait for it"
        if self.writing_since is not None and now - self.writing_since > OUTBOX_STUCK_TIMEOUT:
            return f"it has taken no write for {now - self.writing_since:.0f} s"
        return None

    def empty(self) -> bool:
        return not self.items and self.writing_since is None

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def _drain(self) -> None:
        while not self.closed:
            if not self.items:
                self._wake.clear()
                self._wake.wait()
                continue
            pdus_only, buf = self.items.popleft()
            if pdus_only:
                self.pdus -= 1
            else:
                self.mod_bytes -= len(buf)
            self.writing_since = time.monotonic()
            try:
                self.datapath.send(buf)
            finally:
                self.writing_since = None


def _runs(msgs: list[Message]) -> list[tuple[bool, list[Message]]]:
    """``msgs`` cut into runs, in order: (True, packet-outs: LACPDUs, BFD) or (False, anything else)."""
    runs: list[tuple[bool, list[Message]]] = []
    for msg in msgs:
        pdu = isinstance(msg, PacketOut)
        if runs and runs[-1][0] == pdu:
            runs[-1][1].append(msg)
        else:
            runs.append((pdu, [msg]))
    return runs
