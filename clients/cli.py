"""``lagctl``: the ryu_lag REST API from a shell, over :class:`clients.client.LagClient`.

Tables for people, ``--json`` for scripts. The token comes from ``$RYU_LAG_API_TOKEN``
(never from the command line, which other users can see), the URL from ``--url`` or
``$LAGCTL_URL``. Each kind of failure has its own exit status (see ``EXIT_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from clients.apply import Change, InvalidDesiredState, read_file
from clients.client import (
    DEFAULT_URL,
    ApiError,
    ApplyError,
    Conflict,
    ConnectionFailed,
    LagClient,
    NotFound,
    Unauthorized,
    ValidationError,
    format_dpid,
)

TOKEN_ENV = "RYU_LAG_API_TOKEN"
URL_ENV = "LAGCTL_URL"

EXIT_OK = 0
EXIT_ERROR = 1  # any other refusal, or a server error
EXIT_USAGE = 2  # argparse's
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_INVALID = 6
EXIT_UNAUTHORIZED = 7

INVALID_FILE = "invalid_file"  # the error code of a desired-state file lagctl apply refuses before any call

STATE_LETTERS = "ATGSCDFE"  # activity timeout(short) aggregation sync collecting distributing defaulted expired
_BITS = ("activity", "timeout", "aggregation", "synchronization", "collecting", "distributing", "defaulted", "expired")

EPILOG = f"""\
dpids are hex: 0000000000000001, 1 and 0x1 are the same switch.
LACP state letters: {STATE_LETTERS} = activity, short timeout, aggregation, synchronization,
collecting, distributing, defaulted, expired ('.' when clear).
environment: {TOKEN_ENV} (the API token), {URL_ENV} (default {DEFAULT_URL}).
exit status: 0 ok, 1 other error, 2 usage, 3 controller unreachable, 4 not found,
5 conflict (also a concurrent change through another instance: read again, retry),
6 invalid request or apply file, 7 unauthorized.
"""

APPLY_HELP = """\
Make the switches and bonds a YAML or JSON file names so, with only the PUT and DELETE
calls needed. The file:

  switches:
    "0000000000000001":          # a dpid, hex as everywhere in lagctl
      bonds:
        bond0: {ports: [1, 2], rate: fast}
        uplink: {ports: [3, 4], min_links: 2}

Each bond takes the fields of `lagctl put` (ports, mode, rate, key, system_priority,
port_priority, min_links, system, bfd: e.g. {min_tx_ms: 100, encapsulation: ovs}); omitted fields mean the API's defaults, an omitted key
the bond's current key. Bonds the file does not name are left alone, or deleted with
--prune (on the switches the file names). Changes that free ports or keys go before those
that take them. The first change the controller refuses stops the run; the message names
the switch and bond and gives the API's code and message.
"""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [list(map(str, headers))] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def state_letters(state: dict[str, bool] | None) -> str:
    if state is None:
        return "-"
    return "".join(letter if state[bit] else "." for letter, bit in zip(STATE_LETTERS, _BITS))


def render_bfd_config(bfd: dict[str, Any] | None) -> str:
    """A bond's BFD settings on one line."""
    if bfd is None:
        return "bfd off"
    text = f"bfd {bfd['encapsulation']} min_tx {bfd['min_tx_ms']} ms  min_rx {bfd['min_rx_ms']} ms  multiplier {bfd['multiplier']}"
    return text + f"  to {bfd['dst_mac']} {bfd['src_ip']} -> {bfd['dst_ip']}"


def _interval(ms: float | None) -> str | None:
    return None if ms is None else f"{ms:g}ms"


def render_bfd_members(members: list[dict[str, Any]]) -> list[str]:
    """The BFD table of the members that report a session (none: no lines)."""
    rows = []
    for m in members:
        b = m.get("bfd")
        if b is None:
            continue
        c = b["counters"]
        rows.append([
            m["port"], b["state"], b["remote_state"], f"{b['local_discriminator']}/{b['remote_discriminator']}",
            f"{b['local_diag']}/{b['remote_diag']}", _interval(b["tx_interval_ms"]), _interval(b["rx_interval_ms"]),
            _interval(b["detection_time_ms"]), c["packets_rx"], c["packets_tx"], c["bad_rx"], c["state_changes"],
            "yes" if b["gating"] else "no", "open" if b["gate_open"] else "closed", b["reason"],
        ])
    if not rows:
        return []
    headers = ["PORT", "BFD", "REMOTE", "DISCR L/R", "DIAG L/R", "TX", "RX", "DETECT", "RX", "TX", "BAD",
               "CHANGES", "GATING", "GATE", "REASON"]
    return table(headers, rows).splitlines()


def render_bond(bond: dict[str, Any]) -> str:
    """A bond: one summary line, its settings, a member table, and the members' BFD when it is on."""
    config = bond["config"]
    members = bond["members"]
    if not bond["applied"]:
        status = "not applied (switch not connected)"
    else:
        status = f"{'up' if bond['up'] else 'down'}, {bond['distributing']}/{len(members)} members distributing"
    partner = bond["partner"]
    partner_text = (
        f"{partner['system']} (priority {partner['system_priority']}, key {partner['key']})" if partner else "none"
    )
    lines = [
        f"bond {bond['name']} on {bond['dpid']}: {status}",
        f"  mode {config['mode']}  rate {config['rate']}  key {config['key']}  min_links {config['min_links']}"
        f"  group {bond['group_id'] if bond['group_id'] is not None else '-'}"
        f"  actor {bond['actor_system'] or '-'}  partner {partner_text}",
    ]
    rows = []
    for m in members:
        p = m["partner"]
        last = m["since_last_lacpdu"]
        c = m["counters"]
        rows.append([
            m["port"], m["link"], m["mux"], m["selection"], "yes" if m["enabled"] else "no",
            f"{m['lacp_timeout']}s", f"{last:.1f}s" if last is not None else None,
            state_letters(m["actor"]["state"]) if m["actor"] else None,
            p["system"] if p else None, p["port"] if p else None, state_letters(p["state"]) if p else None,
            c["lacpdus_rx"], c["lacpdus_tx"], c["bad_rx"], c["expirations"], m["reason"],
        ])
    headers = ["PORT", "LINK", "MUX", "SELECTION", "ENABLED", "TIMEOUT", "LAST RX", "ACTOR", "PARTNER",
               "P.PORT", "P.STATE", "RX", "TX", "BAD", "EXP", "REASON"]
    lines += ["  " + line for line in table(headers, rows).splitlines()]
    bfd = config.get("bfd")
    if bfd is not None:
        lines.append("  " + render_bfd_config(bfd))
        lines += ["  " + line for line in render_bfd_members(members)]
    return "\n".join(lines)


def render_switch(switch: dict[str, Any]) -> str:
    bonds = switch["bonds"]
    head = f"switch {switch['dpid']}: {'connected' if switch['connected'] else 'not connected'}"
    if switch["system"]:
        head += f", system {switch['system']}"
    head += f", {len(bonds)} bond{'s' if len(bonds) != 1 else ''}"
    parts = [head]
    if switch["ports"]:
        rows = [[p["port"], p["mac"], "up" if p["up"] else "down", p["bond"]] for p in switch["ports"]]
        parts.append(table(["PORT", "MAC", "LINK", "BOND"], rows))
    parts += [render_bond(bond) for bond in bonds]
    return "\n\n".join(parts)


def render_switches(switches: list[dict[str, Any]]) -> str:
    if not switches:
        return "no switches"
    rows = [[s["dpid"], "yes" if s["connected"] else "no", s["bond_count"]] for s in switches]
    return table(["DPID", "CONNECTED", "BONDS"], rows)


def render_macs(macs: list[dict[str, Any]]) -> str:
    if not macs:
        return "no learned MACs"
    return table(["MAC", "ON"], [[m["mac"], m["bond"] if m["bond"] is not None else m["port"]] for m in macs])


def _mean_ms(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.1f} ms" if count else "-"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def render_cluster(status: dict[str, Any]) -> str:
    """``GET /lag/cluster``: this instance, the store, the election, the instances, then each switch's master."""
    store = status["store"]
    health = "healthy" if store["healthy"] else f"UNHEALTHY ({store['error'] or 'no answer'})"
    lines = [
        f"instance {status['instance']}",
        f"store {store['url']} ({store['kind']}): {health}, {_count(store['requests'], 'request')},"
        f" mean {_mean_ms(store['request_seconds'], store['requests'])}",
    ]
    election = status["election"]
    if election is None:
        lines.append("election: none (one instance)")
    else:
        since = election["seconds_since_step"]
        lines.append(
            f"election: {'reachable' if election['reachable'] else 'UNREACHABLE'}, lease {election['lease_ttl']:g} s,"
            f" {_count(election['steps'], 'step')}, mean {_mean_ms(election['step_seconds'], election['steps'])},"
            f" last {f'{since:.1f} s ago' if since is not None else 'never'}"
        )
    lines.append(f"takeovers {status['takeovers']}, stepdowns {status['stepdowns']}")
    rows = []
    for instance in status["instances"]:
        name = f"{instance['id']} (this)" if instance["id"] == status["instance"] else instance["id"]
        rows.append([name, instance["url"], len(instance["switches"]), len(instance["masters"])])
    parts = ["\n".join(lines), table(["INSTANCE", "URL", "SWITCHES", "MASTERS"], rows)]
    switches = status["switches"]
    if switches:
        rows = [[s["dpid"], s["master"], s["generation"], s["role"]] for s in switches]
        parts.append(table(["DPID", "MASTER", "GENERATION", "ROLE HERE"], rows))
    else:
        parts.append("no switches connected")
    return "\n\n".join(parts)


def _ports(value: str) -> list[int]:
    """One ``--ports`` word: ``1`` or ``1,2``."""
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of port numbers: {value!r}") from None


def _dpid(value: str) -> str:
    try:
        return format_dpid(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lagctl", description="Manage ryu_lag LACP bonds over its REST API.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_URL,
                    help=f"API base URL (default ${URL_ENV} or {DEFAULT_URL})")
    ap.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("switches", help="list switches that are connected or have bonds")
    sub.add_parser("cluster", help="show this instance, the store, the live instances and each switch's master")
    show = sub.add_parser("show", help="show a switch, or one bond, with member status")
    show.add_argument("dpid", type=_dpid)
    show.add_argument("bond", nargs="?")

    for name, text in (("create", "create a bond (POST; name generated unless given)"),
                       ("put", "create or replace a bond (PUT; idempotent)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("dpid", type=_dpid)
        if name == "put":
            cmd.add_argument("name")
        else:
            cmd.add_argument("--name")
        cmd.add_argument("--ports", nargs="+", type=_ports, required=True, metavar="PORT",
                         help="member ports: 1 2 or 1,2")
        cmd.add_argument("--mode", choices=["active", "passive"])
        cmd.add_argument("--rate", choices=["fast", "slow"])
        cmd.add_argument("--key", type=int)
        cmd.add_argument("--system-priority", type=int)
        cmd.add_argument("--port-priority", type=int)
        cmd.add_argument("--min-links", type=int)
        cmd.add_argument("--system", help="actor system id (MAC); default the switch's")
        bfd = cmd.add_argument_group("BFD on the members (off unless one of these is given)")
        bfd.add_argument("--bfd", action="store_true", help="run BFD (defaults: 100 ms, 100 ms, multiplier 3, ovs)")
        if name == "put":
            bfd.add_argument("--no-bfd", action="store_true", help="no BFD (what omitting every --bfd option also means)")
        bfd.add_argument("--bfd-min-tx", type=int, metavar="MS", help="our Desired Min TX in ms (implies --bfd)")
        bfd.add_argument("--bfd-min-rx", type=int, metavar="MS", help="our Required Min RX in ms (implies --bfd)")
        bfd.add_argument("--bfd-multiplier", type=int, metavar="N", help="our Detect Mult (implies --bfd)")
        bfd.add_argument("--bfd-encapsulation", choices=["ovs", "rfc7130"],
                         help="ovs: Open vSwitch's (UDP 3784); rfc7130: micro-BFD (UDP 6784) (implies --bfd)")

    apply = sub.add_parser("apply", help="make the bonds of a YAML or JSON file so (desired state)",
                           description=APPLY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("file", help="the desired state, YAML or JSON (*.json); - reads standard input")
    apply.add_argument("--prune", action="store_true",
                       help="also delete the bonds the file does not name, on the switches it names")
    apply.add_argument("--dry-run", action="store_true", help="print the changes, make none")

    delete = sub.add_parser("delete", help="delete a bond; its ports become plain ports")
    delete.add_argument("dpid", type=_dpid)
    delete.add_argument("name")

    for name, text in (("macs", "list learned MACs"), ("flush", "forget learned MACs and their flows")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("dpid", type=_dpid)
        only = cmd.add_mutually_exclusive_group()
        only.add_argument("--bond", help="only this bond's")
        only.add_argument("--port", type=int, help="only this plain port's")
    return ap


def render_changes(changes: list[Change], *, applied: bool) -> str:
    """One line a change, then how many there were and whether they were made."""
    if not changes:
        return "no changes"
    count = f"{len(changes)} change{'s' if len(changes) != 1 else ''}"
    summary = f"{count} applied" if applied else f"{count} (dry run: nothing changed)"
    return "\n".join([change.describe() for change in changes] + [summary])


def changes_data(changes: list[Change], *, applied: bool) -> dict[str, Any]:
    return {"applied": applied, "changes": [change.as_dict() for change in changes]}


_BFD_OPTIONS = (("bfd_min_tx", "min_tx_ms"), ("bfd_min_rx", "min_rx_ms"), ("bfd_multiplier", "multiplier"),
                ("bfd_encapsulation", "encapsulation"))


def bfd_setting_given(args: argparse.Namespace) -> bool:
    """Whether create/put options ask for BFD: ``--bfd`` or any ``--bfd-*``."""
    return args.bfd or any(getattr(args, option) is not None for option, _ in _BFD_OPTIONS)


def bfd_setting(args: argparse.Namespace) -> dict[str, Any] | bool | None:
    """The ``bfd`` argument of the client from create/put options: fields, False (``--no-bfd``) or None."""
    if getattr(args, "no_bfd", False):
        return False
    if bfd_setting_given(args):
        return {key: getattr(args, option) for option, key in _BFD_OPTIONS if getattr(args, option) is not None}
    return None


def run(args: argparse.Namespace, client: LagClient, out: TextIO) -> None:
    """Carry out one command, printing its result."""

    def emit(data: Any, text: str) -> None:
        out.write((json.dumps(data, indent=2) if args.json else text) + "\n")

    if args.command == "apply":
        changes = client.apply(read_file(args.file), prune=args.prune, dry_run=args.dry_run)
        applied = not args.dry_run
        emit(changes_data(changes, applied=applied), render_changes(changes, applied=applied))
    elif args.command == "switches":
        switches = client.list_switches()
        emit(switches, render_switches(switches))
    elif args.command == "cluster":
        status = client.cluster()
        emit(status, render_cluster(status))
    elif args.command == "show":
        if args.bond:
            bond = client.get_bond(args.dpid, args.bond)
            emit(bond, render_bond(bond))
        else:
            switch = client.get_switch(args.dpid)
            emit(switch, render_switch(switch))
    elif args.command in ("create", "put"):
        settings = {
            "mode": args.mode, "rate": args.rate, "key": args.key, "system_priority": args.system_priority,
            "port_priority": args.port_priority, "min_links": args.min_links, "system": args.system,
            "bfd": bfd_setting(args),
        }
        ports = [port for word in args.ports for port in word]
        if args.command == "create":
            bond = client.create_bond(args.dpid, ports, name=args.name, **settings)
        else:
            bond = client.put_bond(args.dpid, args.name, ports, **settings)
        emit(bond, render_bond(bond))
    elif args.command == "delete":
        client.delete_bond(args.dpid, args.name)
        emit({"deleted": args.name, "dpid": args.dpid}, f"deleted bond {args.name} of {args.dpid}")
    elif args.command == "macs":
        macs = client.list_macs(args.dpid, bond=args.bond, port=args.port)
        emit(macs, render_macs(macs))
    elif args.command == "flush":
        flushed = client.flush_macs(args.dpid, bond=args.bond, port=args.port)
        emit({"dpid": args.dpid, "flushed": flushed}, f"flushed {flushed} MAC{'s' if flushed != 1 else ''}")


def exit_status(error: Exception) -> int:
    if isinstance(error, ApplyError):
        return exit_status(error.error)
    if isinstance(error, InvalidDesiredState):
        return EXIT_INVALID
    if isinstance(error, ConnectionFailed):
        return EXIT_UNREACHABLE
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, Conflict):
        return EXIT_CONFLICT
    if isinstance(error, ValidationError):
        return EXIT_INVALID
    if isinstance(error, Unauthorized):
        return EXIT_UNAUTHORIZED
    return EXIT_ERROR


def report_apply_error(exc: ApplyError, *, as_json: bool) -> None:
    """The changes made before the refused one (stdout), then which change failed and why (stderr)."""
    change, error = exc.change, exc.error
    if as_json:
        print(json.dumps(changes_data(exc.done, applied=True), indent=2))
        detail: dict[str, Any] = {"message": str(error)}
        if isinstance(error, ApiError):
            detail = {"status": error.status, "code": error.code, "message": error.message}
        print(json.dumps({"error": {**detail, "change": change.as_dict()}}), file=sys.stderr)
        return
    if exc.done:
        print(render_changes(exc.done, applied=True))
    if isinstance(error, ApiError):
        outcome = f"refused: {error.code}: {error.message}"
    else:
        outcome = f"failed: {error}"
    print(f"lagctl: {change.action} of bond {change.bond} on {change.dpid} {outcome}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lagctl`` console script; returns the exit status."""
    ap = parser()
    args = ap.parse_args(argv)
    if getattr(args, "no_bfd", False) and bfd_setting_given(args):
        ap.error("--no-bfd cannot go with --bfd or --bfd-* options")
    client = LagClient(args.url, token=os.environ.get(TOKEN_ENV) or None, timeout=args.timeout)
    try:
        run(args, client, sys.stdout)
    except ApplyError as exc:
        report_apply_error(exc, as_json=args.json)
        return exit_status(exc)
    except InvalidDesiredState as exc:
        if args.json:
            print(json.dumps({"error": {"code": INVALID_FILE, "message": f"{args.file}: {exc}"}}), file=sys.stderr)
        else:
            print(f"lagctl: {args.file}: {exc}", file=sys.stderr)
        return exit_status(exc)
    except ApiError as exc:
        if args.json:
            error = {"status": exc.status, "code": exc.code, "message": exc.message}
            print(json.dumps({"error": error}), file=sys.stderr)
        else:
            print(f"lagctl: {exc.code}: {exc.message}", file=sys.stderr)
        return exit_status(exc)
    except ConnectionFailed as exc:
        print(f"lagctl: {exc}", file=sys.stderr)
        return exit_status(exc)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
