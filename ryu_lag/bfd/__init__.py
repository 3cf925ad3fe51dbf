"""BFD (RFC 5880 asynchronous mode) on bond members: pure logic, stdlib only, explicit clock.

``packet`` encodes and decodes control packets in Open vSwitch's and RFC 7130 micro-BFD
encapsulations; ``session`` is one member's session. Nothing here reads a clock or does I/O.
"""

from ryu_lag.bfd.packet import (
    BfdError,
    BfdFrame,
    ControlPacket,
    Diag,
    Encapsulation,
    EncapsulationKind,
    State,
    decode_control,
    decode_frame,
    diag_name,
    encode_control,
    encode_frame,
    source_port,
)
from ryu_lag.bfd.session import TRANSITIONS, BfdSession, Counters, Event, StateChange, Timers, Update

__all__ = [
    "TRANSITIONS",
    "BfdError",
    "BfdFrame",
    "BfdSession",
    "ControlPacket",
    "Counters",
    "Diag",
    "Encapsulation",
    "EncapsulationKind",
    "Event",
    "State",
    "StateChange",
    "Timers",
    "Update",
    "decode_control",
    "decode_frame",
    "diag_name",
    "encode_control",
    "encode_frame",
    "source_port",
]
