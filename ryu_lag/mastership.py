"""Per-switch mastership in a controller cluster: pure decisions, standard library only.

Every switch connects to every instance. The facts come from etcd, read at one revision
(``ryu_lag.election`` reads and writes them; nothing here does I/O or reads a clock):

- the **live instances**: each one's key is bound to its lease, and names the switches it is
  connected to (so every instance knows every instance's connections);
- the **masters**: ``masters/<dpid>`` holds the id of the instance that is the switch's
  master, bound to that instance's lease; the key's mod revision is the master's
  **generation id**. etcd's revision only grows, cluster-wide, so whoever writes the key
  next gets a higher generation than every earlier master of that switch, and the switch
  itself refuses a deposed master's older ROLE_REQUEST (OFPRRFC_STALE).

Rules the plan keeps:

- **One target.** :func:`assign` is a deterministic function of those facts: every instance
  that reads the same revision computes the same master for every switch, so no switch
  has two claimants in the plans of different instances (etcd's compare-and-swap settles
  plans made from different revisions).
- **Fair share.** A switch counts when some live instance is connected to it; an instance
  takes at most ``ceil(switches / live instances)`` (:func:`fair_share`). Current masters
  keep their switches; a free switch goes to the connected instance with room that has
  the fewest, then the lowest id (to one without room only when nobody connected has room:
  a master above its share beats no master). An instance above its share gives away its
  highest dpids, each to the connected instance with room that has the fewest, then the
  lowest id. Switches move only from above-share to below-share instances, so a join moves
  each switch at most once, and a settled cluster plans nothing.
- **Handover without loss.** The new master writes the key first (compare-and-swap on the
  old master's value and generation: a higher generation), then sends ROLE_REQUEST MASTER;
  the switch makes the old master a slave at once, and the old master steps down on the
  switch's say (IS_SLAVE) or when it sees the new key, whichever comes first. It keeps
  serving until then, so the switch is never without a master. A handover from a live
  master waits until the new master has been connected for :data:`HANDOVER_WARM_UP`; a
  free switch, or one whose master no longer connects to it, is claimed at once. The new
  master resumes the switch from the LACP sessions the old one saved in the store.
- **Standbys are cheap.** :data:`ASYNC_CONFIG` (sent once per connection) keeps port status
  flowing to a SLAVE connection, and no packet-ins; :func:`role_request` gives
  the role to hold on each switch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ryu_lag.openflow import FlowRemovedReason, PacketInReason, PortReason, Role, RoleRequest, SetAsync, reasons_mask

HANDOVER_WARM_UP = 3.0
"""Seconds a live master's switch waits, connected to its new master, before that one takes it
over: a new connection (an instance just started, a switch that just redialled) proves itself
before it is handed a switch that is being served well."""

INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An instance id: a name that is safe in an etcd key and a URL path segment."""

ASYNC_CONFIG = SetAsync(
    packet_in_mask=(reasons_mask([PacketInReason.NO_MATCH, PacketInReason.ACTION]), 0),
    port_status_mask=(reasons_mask(PortReason), reasons_mask(PortReason)),
    flow_removed_mask=(reasons_mask(FlowRemovedReason), 0),
)
"""The asynchronous messages each connection asks for, once, when the switch connects.

Master (and EQUAL): what OpenFlow 1.3 gives a master by default. Slave: port status only,
so a standby knows the ports it will take over. No packet-ins: a standby does not run the
switch's LACP engines (it takes over from the sessions the master saved in the store, as a
restarted controller does), and every LACPDU to every standby would cost each instance
nearly what the master spends (measured: 86-101 %), so the instances would not share the
load. The switch keeps both halves per connection and picks by the connection's role when
it sends, so a role change needs no new SET_ASYNC (Open vSwitch: ``ofconn_receives_async_msg``;
it accepts SET_ASYNC from a slave)."""


ROLE_NAMES = {Role.MASTER: "master", Role.SLAVE: "slave", Role.EQUAL: "equal"}
"""This instance's role on a switch connection, as ``GET /lag/cluster`` names it (alone, it keeps EQUAL)."""
PROMOTING = "promoting"
"""The switch's MASTER, not acting yet: reading the switch to take it over."""


@dataclass(frozen=True)
class Master:
    """A switch's master as etcd says: the instance holding ``masters/<dpid>``, and the key's
    mod revision, its generation id."""

    instance: str
    generation: int


@dataclass(frozen=True)
class Instance:
    """A live instance as it published itself: its id, the switches it is connected to, its REST URL."""

    instance_id: str
    dpids: frozenset[int] = frozenset()
    url: str = ""


@dataclass(frozen=True)
class Plan:
    """What one instance should write to etcd now, from one read of the facts."""

    share: int
    """The fair share: at most this many switches per instance."""
    claims: tuple[int, ...] = ()
    """Free switches to claim: create ``masters/<dpid>`` if absent."""
    takeovers: tuple[tuple[int, Master], ...] = ()
    """Switches to take from their current master: replace the key if it still holds that master."""
    releases: tuple[tuple[int, Master], ...] = ()
    """Switches we hold but are no longer connected to: delete the key if it is still ours."""
    handing_over: tuple[tuple[int, str], ...] = ()
    """Switches we hold that another instance is to take over (keep serving them until it does)."""


def valid_instance_id(instance_id: str) -> bool:
    return INSTANCE_ID_RE.fullmatch(instance_id) is not None


def fair_share(switches: int, instances: int) -> int:
    """The most switches one instance should master: ``ceil(switches / instances)`` (0 without instances)."""
    if instances <= 0:
        return 0
    return -(-switches // instances)


def _connections(instances: Mapping[str, Instance]) -> dict[int, list[str]]:
    """Every counted switch (one some live instance is connected to), with those instances by id."""
    connected: dict[int, list[str]] = {}
    for instance_id in sorted(instances):
        for dpid in instances[instance_id].dpids:
            connected.setdefault(dpid, []).append(instance_id)
    return connected


def assign(instances: Mapping[str, Instance], masters: Mapping[int, Master]) -> dict[int, str]:
    """The master every counted switch should have (see the module docstring for the rules).

    ``instances``: the live ones by id; ``masters``: the current election keys by dpid. A
    master whose instance is not live, or no longer connected to the switch, does not count.
    """
    connected = _connections(instances)
    share = fair_share(len(connected), len(instances))
    load = dict.fromkeys(instances, 0)
    target: dict[int, str] = {}
    for dpid, master in masters.items():
        if dpid in connected and master.instance in connected[dpid]:
            target[dpid] = master.instance
            load[master.instance] += 1
    for dpid in sorted(connected):
        if dpid not in target:
            chosen = min(connected[dpid], key=lambda i: (load[i] >= share, load[i], i))
            target[dpid] = chosen
            load[chosen] += 1
    for owner in sorted(instances):
        for dpid in sorted((d for d, i in target.items() if i == owner), reverse=True):
            if load[owner] <= share:
                break
            with_room = [i for i in connected[dpid] if load[i] < share]
            if with_room:
                receiver = min(with_room, key=lambda i: (load[i], i))
                target[dpid] = receiver
                load[receiver] += 1
                load[owner] -= 1
    return target


def plan(
    me: str,
    now: float,
    instances: Mapping[str, Instance],
    masters: Mapping[int, Master],
    connected_since: Mapping[int, float],
) -> Plan:
    """What instance ``me`` should write now.

    ``instances`` and ``masters``: the facts read from etcd at one revision;
    ``connected_since``: the switches ``me`` is connected to now (its own, freshest
    knowledge), each with the time its connection came up (same clock as ``now``). Only a
    switch ``me`` is connected to is claimed or taken over.
    """
    target = assign(instances, masters)
    claims: list[int] = []
    takeovers: list[tuple[int, Master]] = []
    for dpid in sorted(d for d, i in target.items() if i == me and d in connected_since):
        current = masters.get(dpid)
        if current is None:
            claims.append(dpid)
        elif current.instance != me:
            serving = current.instance in instances and dpid in instances[current.instance].dpids
            if not serving or now - connected_since[dpid] >= HANDOVER_WARM_UP:
                takeovers.append((dpid, current))
    releases: list[tuple[int, Master]] = []
    handing_over: list[tuple[int, str]] = []
    for dpid in sorted(d for d, m in masters.items() if m.instance == me):
        if dpid not in connected_since:
            releases.append((dpid, masters[dpid]))
        elif target.get(dpid, me) != me:
            handing_over.append((dpid, target[dpid]))
    share = fair_share(len(_connections(instances)), len(instances))
    return Plan(share, tuple(claims), tuple(takeovers), tuple(releases), tuple(handing_over))


def role_request(me: str, master: Master | None) -> RoleRequest | None:
    """The role ``me`` should hold on a switch whose master etcd names ``master``.

    Ours: MASTER with our generation. Another's: SLAVE with that master's generation (a SLAVE
    request's generation also counts at the switch: the master's own is never stale, and
    never newer than what the master sent, so it cannot make the master's request stale).
    No master: None, keep the current role (a new connection is EQUAL and, not being master,
    sends nothing; a master whose key is gone keeps its role until the switch or etcd says
    otherwise, which is what keeps LACP running while etcd is down).
    """
    if master is None:
        return None
    if master.instance == me:
        return RoleRequest(Role.MASTER, master.generation)
    return RoleRequest(Role.SLAVE, master.generation)


@dataclass
class Connection:
    """This instance's role on one switch connection: what it last asked for, what the switch said."""

    sent: RoleRequest | None = None
    role: Role = Role.EQUAL  # a new connection's role
    generation: int | None = None


class Roles:
    """The OpenFlow role of this instance on each connected switch, and when it acts as master.

    An instance acts for a switch only once the switch has accepted it as MASTER with the
    generation etcd gave it, and stops at the first sign that it is not master any more:
    the switch's SLAVE reply or refusal (IS_SLAVE, STALE, a role-status message), or etcd
    naming another master. Each method returns the switches whose acting changes.
    """

    def __init__(self, me: str) -> None:
        self.me = me
        self.connections: dict[int, Connection] = {}
        self.masters: dict[int, Master] = {}  # the election keys as last read

    def connected(self, dpid: int) -> RoleRequest | None:
        """A new connection (EQUAL): the role to ask for at once, from the last read of etcd."""
        self.connections[dpid] = Connection()
        return self.wanted(dpid)

    def disconnected(self, dpid: int) -> None:
        self.connections.pop(dpid, None)

    def wanted(self, dpid: int) -> RoleRequest | None:
        """The request to send on ``dpid`` now (None: nothing new to ask)."""
        connection = self.connections.get(dpid)
        request = role_request(self.me, self.masters.get(dpid))
        if connection is None or request is None or connection.sent == request:
            return None
        connection.sent = request
        return request

    def read(self, masters: Mapping[int, Master]) -> tuple[dict[int, RoleRequest], list[int]]:
        """A new read of the election keys: the requests to send, and the switches to stop acting
        for because etcd names another master (before the switch says so)."""
        self.masters = dict(masters)
        stop = [dpid for dpid in self.acting() if self.masters.get(dpid, Master(self.me, 0)).instance != self.me]
        requests = {}
        for dpid in sorted(self.connections):
            request = self.wanted(dpid)
            if request is not None:
                requests[dpid] = request
        for dpid in stop:
            self.connections[dpid].role = Role.SLAVE
        return requests, stop

    def lease_lost(self) -> list[int]:
        """Our lease expired at etcd: our keys are gone, another may be master already. Stop acting
        everywhere; the next read asks again."""
        stop = self.acting()
        for dpid in stop:
            self.connections[dpid].role = Role.SLAVE
            self.connections[dpid].sent = None
        return stop

    def replied(self, dpid: int, role: Role, generation: int) -> bool | None:
        """The switch's ROLE_REPLY. True: it makes us the master (with etcd's generation for us);
        False: we were acting and are not any more; None: no change."""
        connection = self.connections.get(dpid)
        if connection is None:
            return None
        was = connection.role == Role.MASTER
        master = self.masters.get(dpid)
        ours = master is not None and master.instance == self.me and master.generation == generation
        if role == Role.MASTER and not ours:
            role = Role.EQUAL  # an answer to a request we no longer stand by: not acting on it
        connection.role, connection.generation = role, generation
        now = role == Role.MASTER
        return None if now == was else now

    def refused(self, dpid: int) -> bool:
        """The switch refused a write or a role request, or said we are not master: True when we were acting."""
        connection = self.connections.get(dpid)
        if connection is None:
            return False
        was = connection.role == Role.MASTER
        connection.role = Role.SLAVE
        connection.sent = None  # ask again from the next read
        return was

    def acting(self) -> list[int]:
        """The switches this instance is master of, as the switch accepted."""
        return sorted(d for d, c in self.connections.items() if c.role == Role.MASTER)

    def role(self, dpid: int) -> Role | None:
        connection = self.connections.get(dpid)
        return connection.role if connection is not None else None
