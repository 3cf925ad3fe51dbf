#!/usr/bin/python3
"""The classic link aggregation experiment in Mininet, controlled by ryu_lag.

    h1 ==(2 links, LACP)== s1 -- h2, h3, h4

s1 is an Open vSwitch userspace bridge (dpid 1, OpenFlow 1.3) managed by a
running ``ryu-lag``. h1 bonds its two links with Linux 802.3ad bonding where
the kernel has it, else with an Open vSwitch LACP bond on a small userspace
bridge of its own in front of it (``pb1``, no controller).

Run with Mininet's interpreter, as root::

    ryu-lag &                                    # OpenFlow 127.0.0.1:6653, REST 127.0.0.1:8080
    curl -X POST http://127.0.0.1:8080/lag/0000000000000001 \\
         -d '{"ports": [1, 2], "rate": "fast"}'  # the bond on s1 ports 1 and 2
    sudo /usr/bin/python3 examples/link_aggregation.py          # checks, exit 0/1
    sudo /usr/bin/python3 examples/link_aggregation.py --cli    # explore it yourself

Without ``--cli`` it waits for LACP, pings h2..h4 -> h1, prints the bond's
LACP status and exits 0 on success, 1 on failure. Either way it removes what
it created (and only that: it never runs ``mn -c``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

from mininet.cli import CLI
from mininet.log import setLogLevel, warn
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController

H1_IP = "10.0.0.1"
_SYNC_COLLECTING_DISTRIBUTING = 0x08 | 0x10 | 0x20  # LACP state bits


class RyuLag(RemoteController):
    """The remote ryu-lag; checked with a plain TCP connect (Mininet's telnet probe
    chokes on the OpenFlow hello that ryu-lag sends)."""

    def checkListening(self) -> None:
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex((self.ip, self.port)) != 0:
                warn(f"*** nothing listens on {self.ip}:{self.port}: start ryu-lag first\n")


class PartnerBridge(OVSSwitch):
    """h1's bonding bridge: userspace, fail_mode=secure, never given a controller."""

    def __init__(self, name: str, **params) -> None:
        super().__init__(name, failMode="secure", datapath="user", **params)

    def start(self, controllers: list) -> None:
        super().start([])


def linux_bonding() -> bool:
    """Whether this kernel can do 802.3ad bonding (loading the module if needed)."""
    if os.path.exists("/sys/class/net/bonding_masters"):
        return True
    if subprocess.run(["modprobe", "-n", "bonding"], capture_output=True).returncode != 0:
        return False
    return subprocess.run(["modprobe", "bonding"], capture_output=True).returncode == 0


def run(*args: str) -> str:
    """A command in the root namespace; raises with its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


class Experiment:
    """The topology, h1's bond, and the checks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.use_linux = args.bond == "linux" or (args.bond == "auto" and linux_bonding())
        self.net = Mininet(controller=None, switch=OVSSwitch, host=Host, autoSetMacs=True, build=False)
        self.pb1: OVSSwitch | None = None
        self.bond = "bond0" if self.use_linux else self.name("h1bond")

    def name(self, base: str) -> str:
        return f"{self.args.prefix}{base}"

    # ---- setup -----------------------------------------------------------------
    def start(self) -> None:
        """Create the nodes and links (every one is Mininet's to remove), start, bond h1."""
        net, args = self.net, self.args
        net.addController(RyuLag(self.name("c0"), ip=args.controller_ip, port=args.controller_port))
        self.s1 = net.addSwitch(self.name("s1"), dpid="1", datapath="user", protocols="OpenFlow13")
        self.h1 = net.addHost(self.name("h1"), ip=f"{H1_IP}/24")
        self.others = [net.addHost(self.name(f"h{i}"), ip=f"10.0.0.{i}/24") for i in (2, 3, 4)]
        if self.use_linux:
            for port in (1, 2):
                net.addLink(self.h1, self.s1, port1=port - 1, port2=port)
        else:
            self.pb1 = net.addSwitch(self.name("pb1"), cls=PartnerBridge, dpid="a1")
            for port in (1, 2):
                net.addLink(self.pb1, self.s1, port1=port, port2=port)
            net.addLink(self.h1, self.pb1, port1=0, port2=3)
        for port, host in enumerate(self.others, start=3):
            net.addLink(host, self.s1, port1=0, port2=port)
        net.build()
        net.start()
        for link in net.links:
            for intf in (link.intf1, link.intf2):
                intf.node.cmd("ethtool -K", intf.name, "tx off")
        if self.use_linux:
            self._linux_bond()
        else:
            self._ovs_bond()

    def _ovs_bond(self) -> None:
        """Replace pb1's two plain ports by an LACP bond, then let pb1 forward."""
        members = [self.pb1.intfs[port].name for port in (1, 2)]
        run(
            "ovs-vsctl", "--", "del-port", self.pb1.name, members[0], "--", "del-port", self.pb1.name, members[1],
            "--", "add-bond", self.pb1.name, self.bond, *members, "lacp=active", "bond_mode=balance-slb",
            "other_config:lacp-time=fast",
        )
        run("ovs-ofctl", "add-flow", self.pb1.name, "actions=NORMAL")

    def _linux_bond(self) -> None:
        """h1's two interfaces enslaved to an 802.3ad bond0 carrying h1's address."""
        h1 = self.h1
        members = [h1.intfs[port].name for port in (0, 1)]
        error = h1.cmd("ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100")
        if error.strip():
            raise RuntimeError(f"cannot create bond0 in {h1.name}: {error.strip()}")
        for intf in members:
            h1.cmd("ip addr flush dev", intf)
            h1.cmd("ip link set", intf, "down")
            h1.cmd("ip link set", intf, "master bond0")
        h1.cmd(f"ip addr add {H1_IP}/24 dev bond0")
        h1.cmd("ethtool -K bond0 tx off")
        h1.cmd("ip link set bond0 up")

    # ---- checks ------------------------------------------------------------------
    def lacp_status(self) -> str:
        if self.use_linux:
            return self.h1.cmd("cat /proc/net/bonding/bond0")
        return subprocess.run(["ovs-appctl", "lacp/show", self.bond], capture_output=True, text=True).stdout

    def negotiated(self) -> bool:
        """Both links aggregated in both directions, as the bond of h1 sees it: h1's side
        attached, and s1's side (the partner in h1's view) synchronized, collecting and
        distributing."""
        text = self.lacp_status()
        if self.use_linux:
            active = text.split("Active Aggregator Info:")[-1]
            partner_states = [int(s) for s in re.findall(r"details partner lacp pdu:.*?port state: (\d+)", text, re.S)]
            return (bool(re.search(r"Number of ports: 2\b", active))
                    and "Partner Mac Address: 00:00:00:00:00:00" not in active
                    and len(partner_states) == 2 and all(s & _SYNC_COLLECTING_DISTRIBUTING == _SYNC_COLLECTING_DISTRIBUTING
                                                         for s in partner_states))
        members = [m[1] for m in re.findall(r"^(?:slave|member):? (\S+): (.*)$", text, re.M)]
        partner_states = re.findall(r"^\s*partner state: (.*)$", text, re.M)
        return ("negotiated" in text and len(members) == 2 and all(m.startswith("current attached") for m in members)
                and len(partner_states) == 2
                and all({"synchronized", "collecting", "distributing"} <= set(s.split()) for s in partner_states))

    def wait_negotiated(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.negotiated():
                return True
            time.sleep(0.5)
        return False

    def ping_h1(self, attempts: int = 3) -> bool:
        """h2..h4 -> h1, like pingAll; a first loss (ARP, learning) gets retries."""
        ok = True
        for host in self.others:
            for _ in range(attempts):
                out = host.cmd(f"ping -c 3 -i 0.2 -W 1 {H1_IP}")
                loss = re.search(r"([\d.]+)% packet loss", out)
                if loss and loss.group(1) == "0":
                    break
            print(f"*** {host.name} -> {self.h1.name}: {loss.group(1) if loss else '?'}% loss", flush=True)
            ok = ok and bool(loss) and loss.group(1) == "0"
        return ok

    def stop(self) -> None:
        self.net.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--controller-ip", default="127.0.0.1", help="ryu-lag's OpenFlow address (127.0.0.1)")
    parser.add_argument("--controller-port", type=int, default=6653, help="ryu-lag's OpenFlow port (6653)")
    parser.add_argument("--cli", action="store_true", help="drop into the Mininet CLI instead of running the checks")
    parser.add_argument("--bond", choices=("auto", "linux", "ovs"), default="auto",
                        help="h1's bond: Linux 802.3ad if the kernel has it (auto), or force one kind")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for LACP (30)")
    parser.add_argument("--prefix", default="", help="prefix for every node name, to run beside other networks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setLogLevel("info")
    # A SIGTERM (a timeout, say) still cleans up through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    experiment = Experiment(args)
    try:
        experiment.start()
        print(f"*** h1 bond: {'Linux 802.3ad' if experiment.use_linux else 'Open vSwitch LACP'}", flush=True)
        if args.cli:
            CLI(experiment.net)
            return 0
        negotiated = experiment.wait_negotiated(args.timeout)
        print("*** LACP negotiated" if negotiated else f"*** LACP not negotiated after {args.timeout:.0f} s", flush=True)
        pings = negotiated and experiment.ping_h1()
        print(f"*** LACP status of {experiment.bond}:\n{experiment.lacp_status()}", flush=True)
        print("*** success" if pings else "*** FAILED", flush=True)
        return 0 if pings else 1
    except RuntimeError as exc:
        print(f"*** error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        experiment.stop()


if __name__ == "__main__":
    sys.exit(main())
