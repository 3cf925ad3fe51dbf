"""The 802.1AX LACP engine: pure logic, stdlib only, driven with an explicit clock."""

from ryu_lag.lacp.bond import BondSettings, LacpBond, MemberChange, Transmit, Update
from ryu_lag.lacp.member import Member, MemberSession, Mode, MuxState, Rate, RxState
from ryu_lag.lacp.pdu import Lacpdu, LacpState, PduError, PortInfo, decode_frame, encode_frame

__all__ = [
    "BondSettings",
    "LacpBond",
    "Lacpdu",
    "LacpState",
    "Member",
    "MemberChange",
    "MemberSession",
    "Mode",
    "MuxState",
    "PduError",
    "PortInfo",
    "Rate",
    "RxState",
    "Transmit",
    "Update",
    "decode_frame",
    "encode_frame",
]
