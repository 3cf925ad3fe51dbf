"""This instance's part in a controller cluster: the election's green thread and the switches' roles.

With ``--lag-store etcd://...`` every instance is connected to every switch. The election
(``ryu_lag.election``) decides in etcd which instance masters each switch; this module
steps it every ``STEP_INTERVAL``, asks each switch for the role etcd gives us
(``mastership.Roles``: MASTER with our generation, else SLAVE with the master's), and tells
the app when to start or stop acting for a switch: start once the switch has accepted us
as MASTER, stop at the first sign it has not (its reply, a refusal, etcd naming another
master, our lease lost). When etcd does not answer, the roles stay as they are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ryu_lag.config import format_dpid
from ryu_lag.election import STEP_INTERVAL, ClusterView, Election, MasterWatch
from ryu_lag.mastership import ASYNC_CONFIG, PROMOTING, ROLE_NAMES, Roles
from ryu_lag.openflow import ControlMessage, Role

LOG = logging.getLogger("ryu_lag.cluster")

class Cluster:
    """The election loop and the roles of one instance.

    ``send(dpid, messages)`` writes control messages to a switch whatever our role;
    ``act(dpid)`` starts acting as a switch's master (the app reads the switch and takes over),
    ``stand_by(dpid)`` stops it.
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]], instance_id: str, url: str, *,
                 send: Callable[[int, list[ControlMessage]], None], act: Callable[[int], None],
                 stand_by: Callable[[int], None]) -> None:
        self.election = Election(endpoints, instance_id, url)
        self._changed = threading.Event()  # a master key changed: step now
        self.watch = MasterWatch(endpoints, self._changed.set)
        self.instance_id = instance_id
        self.roles = Roles(instance_id)
        self.view = ClusterView(0)
        self.reachable = False
        self.error: str | None = None  # why the last step could not reach etcd
        self.connected_since: dict[int, float] = {}
        self._send, self._act, self._stand_by = send, act, stand_by
        self.last_step: float | None = None
        self.steps = 0
        self.step_seconds = 0.0
        self.takeovers = 0
        self.stepdowns = 0
        self.running = True

    # ---- the loop --------------------------------------------------------------------
    def run(self) -> None:
        """Step the election every STEP_INTERVAL, and at once when a master key changes, until ``close``."""
        self.watch.start()
        while self.running:
            started = time.monotonic()
            self._changed.clear()
            try:
                self.step(started)
            except Exception:  # noqa: BLE001 - the election must outlive any one failure
                LOG.exception("election step failed")
            self._changed.wait(max(0.0, STEP_INTERVAL - (time.monotonic() - started)))
        self.watch.stop()

    def step(self, now: float) -> None:
        result = self.election.step(now, dict(self.connected_since))
        self.steps += 1
        self.step_seconds += time.monotonic() - now
        self.last_step = time.monotonic()
        self.reachable = result.reachable
        self.error = None if result.reachable else f"etcd unreachable: {result.error}"
        if not result.reachable:
            return  # keep every role: with etcd down nobody else can be elected either
        self.view = result.view
        if result.lease_lost:
            for dpid in self.roles.lease_lost():
                self._stop(dpid, "our lease expired at etcd")
        requests, stop = self.roles.read(result.view.masters)
        for dpid in stop:
            self._stop(dpid, f"etcd names {result.view.masters[dpid].instance} master")
        for dpid, request in requests.items():
            self._send(dpid, [request])

    def close(self) -> None:
        """A planned stop: end the loop and revoke our lease, so the others take over at once."""
        self.running = False
        self.watch.stop()
        self.election.close()

    # ---- switch events (from the app) ------------------------------------------------------
    def connected(self, dpid: int, now: float) -> None:
        """A switch connected: ask for the asynchronous messages a standby needs, and for our role."""
        self.connected_since[dpid] = now
        request = self.roles.connected(dpid)
        self._send(dpid, [ASYNC_CONFIG] + ([request] if request is not None else []))

    def disconnected(self, dpid: int) -> None:
        self.connected_since.pop(dpid, None)
        if self.roles.role(dpid) == Role.MASTER:
            self.stepdowns += 1  # the connection went: the switch has another master, or none yet
        self.roles.disconnected(dpid)

    def role_reply(self, dpid: int, role: int, generation: int) -> None:
        change = self.roles.replied(dpid, Role(role), generation)
        if change is True:
            self.takeovers += 1
            LOG.info("switch %s: master (generation %d)", format_dpid(dpid), generation)
            self._act(dpid)
        elif change is False:
            self._stop(dpid, f"the switch answered role {ROLE_NAMES.get(Role(role), role)}")

    def refused(self, dpid: int, why: str) -> None:
        """The switch refused us as master (IS_SLAVE, a stale generation, or it said so)."""
        if self.roles.refused(dpid):
            self._stop(dpid, why)

    def _stop(self, dpid: int, why: str) -> None:
        self.stepdowns += 1
        LOG.info("switch %s: standing by: %s", format_dpid(dpid), why)
        self._stand_by(dpid)

    # ---- what REST shows ---------------------------------------------------------------
    def master_of(self, dpid: int) -> str | None:
        if self.roles.role(dpid) == Role.MASTER:
            return self.instance_id
        master = self.view.masters.get(dpid)
        return master.instance if master is not None else None

    def status(self, acting: Callable[[int], bool]) -> dict[str, Any]:
        """The cluster as this instance sees it (``acting(dpid)``: whether the app acts for the switch)."""
        view = self.view
        masters: dict[str, list[str]] = {}
        for dpid, master in sorted(view.masters.items()):
            masters.setdefault(master.instance, []).append(format_dpid(dpid))
        switches = []
        for dpid in sorted(set(self.connected_since) | set(view.masters)):
            master = view.masters.get(dpid)
            role = self.roles.role(dpid)
            name = ROLE_NAMES.get(role, ROLE_NAMES[Role.EQUAL]) if role is not None else None
            if role == Role.MASTER and not acting(dpid):
                name = PROMOTING
            switches.append({"dpid": format_dpid(dpid), "master": self.master_of(dpid),
                             "generation": master.generation if master is not None else None, "role": name})
        return {
            "election": {
                "reachable": self.reachable,
                "lease_ttl": self.election.lease_ttl,
                "seconds_since_step": None if self.last_step is None else round(time.monotonic() - self.last_step, 3),
                "steps": self.steps,
                "step_seconds": round(self.step_seconds, 6),
            },
            "instances": [
                {"id": i.instance_id, "url": i.url, "switches": [format_dpid(d) for d in sorted(i.dpids)],
                 "masters": masters.get(i.instance_id, [])}
                for _, i in sorted(view.instances.items())
            ],
            "switches": switches,
            "takeovers": self.takeovers,
            "stepdowns": self.stepdowns,
        }

