"""BFD (RFC 5880 asynchronous mode) on bond members: pure logic, stdlib only, explicit clock.

``packet`` encodes and decodes control packets in Open vSwitch's and RFC 7130 micro-BFD
encapsulations; ``session`` is one member's session; ``bond`` runs the sessions of one bond's
members and says which members BFD lets carry traffic. Nothing here reads a clock or does I/O.
"""

from ryu_lag.bfd.bond import (
    SILENT_PARTNER_TIME,
    BfdConfig,
    BfdMember,
    BfdUpdate,
    BondBfd,
    Disarmed,
    Discriminators,
    is_bfd_frame,
    state_name,
)
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
    "SILENT_PARTNER_TIME",
    "TRANSITIONS",
    "BfdConfig",
    "BfdError",
    "BfdFrame",
    "BfdMember",
    "BfdSession",
    "BfdUpdate",
    "BondBfd",
    "ControlPacket",
    "Counters",
    "Diag",
    "Disarmed",
    "Discriminators",
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
    "is_bfd_frame",
    "source_port",
    "state_name",
]
