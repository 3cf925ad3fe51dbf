"""OpenFlow 1.3 messages as plain values.

The switching logic and the service build these; ``ryu_lag.ofp_wire`` encodes them
as OpenFlow 1.3 bytes for the Ryu shell to send. Tests apply them to a fake flow
table. Nothing here imports Ryu.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

# Reserved port numbers (OpenFlow 1.3).
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPP_ANY = 0xFFFFFFFF
OFPG_ALL = 0xFFFFFFFC
OFPG_ANY = 0xFFFFFFFF
OFPM_ALL = 0xFFFFFFFF  # every meter, in a meter DELETE

ETH_TYPE_SLOW = 0x8809
ETH_TYPE_IPV4 = 0x0800
SLOW_PROTOCOLS_MAC = "01:80:c2:00:00:02"


class Table(enum.IntEnum):
    """The pipeline: classify the input port, learn the source, forward to the destination."""

    INGRESS = 0
    ETH_SRC = 1
    ETH_DST = 2


class FlowCommand(enum.Enum):
    ADD = "add"
    DELETE = "delete"
    DELETE_STRICT = "delete_strict"


class GroupCommand(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True)
class Match:
    """Match fields used by ryu_lag; ``None`` means wildcard."""

    in_port: int | None = None
    metadata: int | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    eth_type: int | None = None
    other_oxm: bytes = b""
    """Read back only: OXM TLVs of fields this model does not name (or names only unmasked),
    as the switch reported them, so that a strict delete still names the exact flow."""


@dataclass(frozen=True)
class Output:
    """Output to a port (or reserved port such as OFPP_CONTROLLER)."""

    port: int
    max_len: int = 0xFFE5  # OFPCML_NO_BUFFER: send the whole packet to the controller


@dataclass(frozen=True)
class Group:
    """Send through a group (a bond's SELECT group)."""

    group_id: int


Action = Output | Group


@dataclass(frozen=True)
class FlowMod:
    """A flow table edit. ``actions`` are apply-actions; ``goto`` a goto-table.

    ``table`` is a plain int only in a flow read back from a table ryu_lag does not use.
    """

    table: Table | int
    priority: int
    match: Match
    command: FlowCommand = FlowCommand.ADD
    actions: tuple[Action, ...] = ()
    goto: Table | None = None
    write_metadata: int | None = None
    meter: int | None = None
    idle_timeout: int = 0
    hard_timeout: int = 0
    cookie: int = 0
    cookie_mask: int = 0
    notify_removal: bool = False
    out_port: int = OFPP_ANY
    out_group: int = OFPG_ANY
    unreadable: str = ""
    """Read back only: what the switch reported that this model cannot say (never sent)."""


class GroupType(enum.Enum):
    SELECT = "select"  # one live bucket per packet: a bond
    ALL = "all"  # every bucket: a flood


@dataclass(frozen=True)
class GroupMod:
    """A group edit.

    SELECT: one bucket per port in ``ports`` that outputs to that port and watches it.
    ALL: one bucket per port in ``ports`` (output) and one per group in ``groups`` (chained).
    """

    command: GroupCommand
    group_id: int
    ports: tuple[int, ...] = ()
    group_type: GroupType = GroupType.SELECT
    groups: tuple[int, ...] = ()
    unreadable: str = ""
    """Read back only: what the switch reported that this model cannot say (never sent)."""


class MeterCommand(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True)
class MeterMod:
    """Add (or modify) a packets-per-second meter with one drop band, or delete a meter."""

    meter_id: int
    rate_pps: int = 0
    burst: int = 0
    command: MeterCommand = MeterCommand.ADD
    unreadable: str = ""
    """Read back only: what the switch reported that this model cannot say (never sent)."""


@dataclass(frozen=True)
class PacketOut:
    """Send ``data`` out of ``port``."""

    port: int
    data: bytes = field(repr=False)


Message = FlowMod | GroupMod | MeterMod | PacketOut


class Role(enum.IntEnum):
    """A controller's role on a switch (``ofp_controller_role``; the values are the wire's)."""

    NOCHANGE = 0  # ask for the current role without changing it
    EQUAL = 1  # full access, like every other EQUAL controller (a connection's first role)
    MASTER = 2  # full access; the switch makes every other master a slave
    SLAVE = 3  # read-only: writes are refused with IS_SLAVE; asynchronous messages per its SET_ASYNC masks


@dataclass(frozen=True)
class RoleRequest:
    """Ask the switch for ``role``. For MASTER and SLAVE the switch refuses (ROLE_REQUEST_FAILED,
    STALE) a ``generation_id`` older than the newest it has seen (compared as a wrapping 64-bit
    distance); EQUAL and NOCHANGE ignore it."""

    role: Role
    generation_id: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.generation_id < 1 << 64:
            raise ValueError(f"generation_id {self.generation_id} is not an unsigned 64-bit number")


class PacketInReason(enum.IntEnum):
    NO_MATCH = 0  # a table-miss flow's output to the controller (OpenFlow 1.3: priority 0, empty match)
    ACTION = 1  # any other flow's output to the controller: LACPDU and learning punts
    INVALID_TTL = 2


class PortReason(enum.IntEnum):
    ADD = 0
    DELETE = 1
    MODIFY = 2


class FlowRemovedReason(enum.IntEnum):
    IDLE_TIMEOUT = 0
    HARD_TIMEOUT = 1
    DELETE = 2
    GROUP_DELETE = 3


def reasons_mask(reasons: Iterable[int]) -> int:
    """The asynchronous-message mask with one bit (``1 << reason``) per reason."""
    mask = 0
    for reason in reasons:
        mask |= 1 << int(reason)
    return mask


@dataclass(frozen=True)
class SetAsync:
    """Which asynchronous messages this connection receives: each pair is (mask while MASTER or
    EQUAL, mask while SLAVE), a mask having bit ``1 << reason`` per reason wanted (see
    ``reasons_mask``). The switch keeps both halves for the connection and picks by its role
    at the moment it sends, so one SET_ASYNC at connect covers every later role change."""

    packet_in_mask: tuple[int, int]
    port_status_mask: tuple[int, int]
    flow_removed_mask: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("packet_in_mask", "port_status_mask", "flow_removed_mask"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(0 <= mask < 1 << 32 for mask in pair):
                raise ValueError(f"{name} {pair!r} is not two unsigned 32-bit masks (master/equal, slave)")


ControlMessage = RoleRequest | SetAsync
"""Messages about the connection itself, not the switch's tables (``ofp_wire`` encodes both kinds)."""


@dataclass(frozen=True)
class ObservedSwitch:
    """What a switch reported having, each entry as the ADD that would create it (no counters).

    ``flows``: the flows whose cookie ``switching.COOKIE_MASK`` selects as ours; ``groups``
    and ``meters``: every group and meter, other applications' included. An entry the
    model cannot fully say carries ``unreadable`` (or a match ``other_oxm``), so it never
    equals an entry ryu_lag wants.
    """

    flows: tuple[FlowMod, ...] = ()
    groups: tuple[GroupMod, ...] = ()
    meters: tuple[MeterMod, ...] = ()
