"""The LACP engine against itself, with a fake clock: negotiation, expiry, selection."""

from __future__ import annotations

import pytest

from ryu_lag.lacp import BondSettings, LacpBond, LacpState, Mode, MuxState, Rate, RxState, encode_frame
from ryu_lag.lacp.member import AGGREGATE_WAIT_TIME, SYNC_GUARD_TIME
from ryu_lag.lacp.pdu import Lacpdu, PortInfo

from tests.unit.lacp_sim import Lab, OvsLikePartner

SW = "02:00:00:00:00:aa"
HOST = "02:00:00:00:00:bb"
OTHER = "02:00:00:00:00:cc"


def bond(system: str, ports=(1, 2), key: int = 1, **kw) -> LacpBond:
    return LacpBond(BondSettings(key=key, **kw), system, ports)


def paired(mode_a=Mode.ACTIVE, mode_b=Mode.ACTIVE, rate=Rate.FAST, **kw) -> tuple[Lab, LacpBond, LacpBond]:
    lab = Lab()
    a = bond(SW, mode=mode_a, rate=rate, **kw)
    b = bond(HOST, key=7, mode=mode_b, rate=rate)
    lab.connect((a, 1), (b, 1))
    lab.connect((a, 2), (b, 2))
    return lab, a, b


def distributing(b: LacpBond) -> set[int]:
    return {p for p, m in b.members.items() if m.enabled}


def test_active_active_negotiates_and_state_bits_tell_the_truth():
    lab, a, b = paired()
    lab.run(1.0)
    assert distributing(a) == set()  # aggregate wait (2 s) not over
    assert a.members[1].mux is MuxState.WAITING
    lab.run(3.0)
    assert distributing(a) == {1, 2} and distributing(b) == {1, 2}
    state = a.members[1].actor_state()
    up = (
        LacpState.ACTIVITY
        | LacpState.TIMEOUT
        | LacpState.AGGREGATION
        | LacpState.SYNCHRONIZATION
        | LacpState.COLLECTING
        | LacpState.DISTRIBUTING
    )
    assert state == up == 0x3F
    info = a.members[1].actor_info()
    assert (info.system, info.key, info.port) == (SW, 1, 1)  # ours, not the partner's key 7
    assert a.members[1].partner.system == HOST and a.members[1].partner.key == 7
    assert a.reason(1) == "distributing"


@pytest.mark.parametrize("ours, theirs", [(Mode.ACTIVE, Mode.PASSIVE), (Mode.PASSIVE, Mode.ACTIVE)])
def test_active_with_passive_negotiates(ours, theirs):
    lab, a, b = paired(ours, theirs)
    lab.run(5.0)
    assert distributing(a) == {1, 2} and distributing(b) == {1, 2}
    passive = a if ours is Mode.PASSIVE else b
    assert not passive.members[1].actor_state() & LacpState.ACTIVITY


def test_passive_passive_never_aggregates_and_says_why():
    lab, a, b = paired(Mode.PASSIVE, Mode.PASSIVE)
    lab.run(10.0)
    assert distributing(a) == set() and distributing(b) == set()
    assert lab.sent == []  # neither side ever speaks first
    assert a.members[1].rx_state is RxState.DEFAULTED
    assert "passive" in a.reason(1)


def _deliver_one_pdu(a: LacpBond, now: float) -> None:
    """The partner sends one in-sync PDU to member 1."""
    partner = PortInfo(1, HOST, 7, 1, 1, LacpState.ACTIVITY | LacpState.AGGREGATION | LacpState.TIMEOUT)
    a.receive_frame(1, encode_frame(HOST, Lacpdu(partner, a.members[1].actor_info())), now)


@pytest.mark.parametrize("rate, timeout", [(Rate.FAST, 3.0), (Rate.SLOW, 90.0)])
def test_expiry_exactly_at_timeout_after_last_pdu(rate, timeout):
    a = bond(SW, ports=(1,), rate=rate)
    a.set_link(1, True, 0.0)
    _deliver_one_pdu(a, 10.0)
    assert a.members[1].rx_state is RxState.CURRENT
    a.tick(10.0 + timeout - 0.001)
    assert a.members[1].rx_state is RxState.CURRENT
    assert a.members[1].counters.expirations == 0
    a.tick(10.0 + timeout)
    assert a.members[1].rx_state is RxState.EXPIRED
    assert a.members[1].counters.expirations == 1
    assert a.members[1].actor_state() & LacpState.EXPIRED
    # Three more seconds of silence (always short in EXPIRED): defaulted.
    a.tick(10.0 + timeout + 3.0)
    assert a.members[1].rx_state is RxState.DEFAULTED
    assert a.members[1].actor_state() & LacpState.DEFAULTED


def test_silent_loss_stops_distributing_at_three_seconds_fast():
    lab, a, b = paired()
    lab.run(5.0)
    wire = lab.wires[1]
    wire.silent = True
    lost_at = lab.now
    last_rx = a.members[2].counters.last_rx
    lab.run(2.5)
    assert 2 in distributing(a)
    lab.run(1.0)
    assert distributing(a) == {1} and distributing(b) == {1}
    assert a.members[2].counters.last_rx == last_rx
    assert lost_at + 2.0 < last_rx + 3.0 <= lab.now
    wire.silent = False
    lab.run(5.0)
    assert distributing(a) == {1, 2}


def test_silent_loss_slow_rate_takes_90_seconds():
    lab, a, b = paired(rate=Rate.SLOW)
    lab.step = 0.05
    lab.run(5.0)
    assert distributing(a) == {1, 2}
    lab.wires[1].silent = True
    lab.run(60.0)
    assert 2 in distributing(a)  # slow partner PDUs every 30 s, we wait 90 s
    lab.run(31.0)
    assert distributing(a) == {1}


def test_link_down_stops_distributing_at_once():
    lab, a, b = paired()
    lab.run(5.0)
    changes = a.set_link(2, False, lab.now).changes
    assert [(c.port, c.distributing) for c in changes] == [(2, False)]
    assert a.reason(2) == "link down"


def test_periodic_rate_follows_partner_timeout_bit():
    lab = Lab()
    a = bond(SW, ports=(1,), rate=Rate.SLOW)  # we wait 90 s ...
    b = bond(HOST, ports=(1,), key=7, rate=Rate.FAST)  # ... but they asked for fast
    lab.connect((a, 1), (b, 1))
    lab.run(10.0)
    start = len([s for s in lab.sent if s[1] is a])
    lab.run(10.0)
    sent = len([s for s in lab.sent if s[1] is a]) - start
    assert 9 <= sent <= 11  # once a second, as the partner's Timeout bit asks
    start_b = len([s for s in lab.sent if s[1] is b])
    lab.run(60.0)
    assert len([s for s in lab.sent if s[1] is b]) - start_b == 2  # every 30 s towards a slow actor


@pytest.mark.parametrize("system, key", [(HOST, 99), (OTHER, 7)], ids=["key", "system"])
def test_partner_key_or_system_change_drops_member_and_it_returns_when_it_agrees(system, key):
    lab, a, b = paired()
    lab.run(5.0)
    b2 = bond(system, ports=(2,), key=key)  # member 2's partner is now another bond or device
    wire = lab.wires[1]
    lab.wires[1] = type(wire)((a, 2), (b2, 2))
    b2.set_link(2, True, lab.now)
    lab.run(4.0)
    assert (a.members[2].partner.system, a.members[2].partner.key) == (system, key)
    assert not a.members[2].selected and distributing(a) == {1}
    assert "differs" in a.reason(2)
    lab.wires[1] = wire  # cabled back to the right bond
    lab.run(5.0)
    assert distributing(a) == {1, 2}


def _changes(update) -> list[tuple[int, bool, bool]]:
    return [(c.port, c.collecting, c.distributing) for c in update.changes]


def _ovs_lab(ports, **partner) -> tuple[Lab, LacpBond, OvsLikePartner]:
    lab = Lab()
    a = bond(SW, ports=ports, rate=Rate.FAST)
    p = OvsLikePartner(HOST, 7, ports, **partner)
    for port in ports:
        lab.connect((a, port), (p, port))
    return lab, a, p


@pytest.mark.parametrize("ports", [(1,), (1, 2)], ids=["one member", "two members"])
@pytest.mark.parametrize("field, value", [("key", 99), ("system", OTHER), ("system_priority", 1)])
def test_partner_identity_change_seen_by_every_member_detaches_them_all_until_the_wait_is_over(ports, field, value):
    # A partner that stays in sync through the change (as Open vSwitch does when re-keyed or
    # replaced in place): only the identity tells the members that they must reattach.
    lab, a, p = _ovs_lab(ports)
    lab.run(5.0)
    assert distributing(a) == set(ports)
    setattr(p, field, value)
    changed_at = lab.now
    lab.run(0.01)  # the partner sends its new identity on every member at once
    assert a.partner_id == (p.system_priority, p.system, p.key)
    for port in ports:
        member = a.members[port]
        assert member.mux is MuxState.WAITING and member.selected  # back from DETACHED, waiting again
        assert not member.actor_state() & LacpState.SYNCHRONIZATION  # and it told the partner so
    assert distributing(a) == set()
    lab.run(changed_at + AGGREGATE_WAIT_TIME - 0.02 - lab.now)
    assert distributing(a) == set()
    assert {a.members[port].mux for port in ports} == {MuxState.WAITING}
    lab.run(0.5)
    assert distributing(a) == set(ports)
    assert {(a.members[port].partner.system, a.members[port].partner.key) for port in ports} == {(p.system, p.key)}


def test_partner_identity_change_on_one_member_then_the_other():
    lab, a, p = _ovs_lab((1, 2))
    lab.run(5.0)
    old = a.partner_id
    actor = p.actor(1)
    rekeyed = PortInfo(actor.system_priority, actor.system, 99, actor.port_priority, 1, actor.state)
    a.receive_frame(1, encode_frame(HOST, Lacpdu(rekeyed, a.members[1].actor_info())), lab.now)
    assert a.partner_id == old and distributing(a) == {2}  # member 2 still has the old partner
    assert a.members[1].mux is MuxState.DETACHED and "differs" in a.reason(1)
    p.key = 99  # now member 2 hears it too: the aggregator takes the new partner ...
    lab.run(0.01)
    assert a.partner_id[2] == 99
    assert distributing(a) == set()  # ... and member 2 does not stay distributing through it
    assert {a.members[1].mux, a.members[2].mux} == {MuxState.WAITING}
    lab.run(AGGREGATE_WAIT_TIME + 0.2)
    assert distributing(a) == {1, 2}


@pytest.mark.parametrize("port_priority, port", [(1, 5), (9, 1)], ids=["recabled", "new port priority"])
def test_partner_port_change_reattaches_only_that_member(port_priority, port):
    lab, a, p = _ovs_lab((1, 2))
    lab.run(5.0)
    actor = p.actor(1)
    moved = PortInfo(actor.system_priority, actor.system, actor.key, port_priority, port, actor.state)
    a.receive_frame(1, encode_frame(HOST, Lacpdu(moved, a.members[1].actor_info())), lab.now)
    assert a.members[1].mux is MuxState.WAITING and a.members[1].selected  # detached, then waiting again
    assert distributing(a) == {2}  # the other member is not disturbed
    lab.run(1.0)  # the partner keeps sending its real port on member 1: a change again, so wait again
    assert a.members[1].mux is MuxState.WAITING and distributing(a) == {2}
    lab.run(AGGREGATE_WAIT_TIME + 0.5)
    assert distributing(a) == {1, 2}


def _ovs_pdu(a: LacpBond, port: int, sees_our_sync: bool, stale: bool = False) -> bytes:
    """What Open vSwitch sends: attached (Sync+Collecting+Distributing) whatever it has seen of us.

    Its view of us is our actor information, with or without our Sync; ``stale``: with our
    Activity bit wrong too, so that we answer it.
    """
    actor = PortInfo(1, HOST, 7, 1, port, LacpState(0x3F))
    ours = a.members[port].actor_info()
    seen = ours.state | LacpState.SYNCHRONIZATION if sees_our_sync else ours.state & ~LacpState.SYNCHRONIZATION
    if stale:
        seen ^= LacpState.ACTIVITY
    view = PortInfo(ours.system_priority, ours.system, ours.key, ours.port_priority, ours.port, seen)
    return encode_frame(HOST, Lacpdu(actor, view))


def _attached_and_collecting() -> tuple[LacpBond, float]:
    """One member hears an Open vSwitch partner at 0.5, attaches at 2.5 and collects; returns (bond, 2.5)."""
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    a.set_link(1, True, 0.0)
    a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=False), 0.5)
    assert a.members[1].mux is MuxState.WAITING
    for now in (1.0, 2.0):  # periodic transmissions
        assert a.next_deadline() == now
        a.tick(now)
    attached_at = 0.5 + AGGREGATE_WAIT_TIME
    assert a.deadline == attached_at
    update = a.tick(attached_at)
    [tx] = update.transmit  # our first PDU with Sync goes out now ...
    assert tx.pdu.actor.state & LacpState.SYNCHRONIZATION and tx.pdu.actor.state & LacpState.COLLECTING
    assert _changes(update) == [(1, True, False)]  # ... collecting at once, not distributing yet
    assert a.members[1].mux is MuxState.COLLECTING
    return a, attached_at


@pytest.mark.parametrize("after", [0.0, 0.05], ids=["same instant", "within the guard"])
def test_distributing_starts_as_soon_as_the_partner_shows_it_recorded_our_sync(after):
    a, t0 = _attached_and_collecting()
    update = a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=True), t0 + after)
    assert _changes(update) == [(1, True, True)]
    assert a.reason(1) == "distributing"
    assert a.next_deadline() > t0 + SYNC_GUARD_TIME  # the guard timer stopped


def test_distributing_waits_for_the_guard_when_the_partner_never_shows_our_sync():
    a, t0 = _attached_and_collecting()
    guard_end = t0 + SYNC_GUARD_TIME
    assert a.deadline == a.next_deadline() == guard_end  # the scheduler wakes us for it
    # The partner speaks again, still without our Sync: not yet.
    assert _changes(a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=False), t0 + SYNC_GUARD_TIME / 2)) == []
    assert not a.members[1].enabled
    assert a.reason(1) == "waiting for the partner to record our synchronization"
    assert _changes(a.tick(guard_end - 0.001)) == []
    assert _changes(a.tick(guard_end)) == [(1, True, True)]
    assert a.deadline > guard_end  # fired once, not again
    assert a.tick(a.deadline).changes == [] and a.members[1].enabled


def test_the_guard_runs_from_our_first_sync_pdu_not_from_attaching():
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    a.set_link(1, True, 0.0)
    a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=False), 0.5)
    a.tick(1.0)
    a.tick(2.0)
    for now in (2.3, 2.4):  # stale views of us: we answer, and use up 3 transmissions per second
        assert len(a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=False, stale=True), now).transmit) == 1
    update = a.tick(2.5)
    assert a.members[1].mux is MuxState.COLLECTING and update.transmit == []  # rate limited: Sync not sent yet
    assert a.next_deadline() == 3.0  # when it may go
    update = a.tick(3.0)
    assert len(update.transmit) == 1 and update.transmit[0].pdu.actor.state & LacpState.SYNCHRONIZATION
    assert not a.members[1].enabled
    assert a.deadline == 3.0 + SYNC_GUARD_TIME
    assert _changes(a.tick(3.0 + SYNC_GUARD_TIME)) == [(1, True, True)]


def test_link_down_or_expiry_stop_distributing_at_once_and_the_next_attach_waits_again():
    a, t0 = _attached_and_collecting()
    a.tick(t0 + SYNC_GUARD_TIME)
    assert a.members[1].enabled
    last_rx = a.members[1].counters.last_rx
    # Expiry: out of distributing and collecting at the very tick that expires the partner.
    assert _changes(a.tick(last_rx + 3.0)) == [(1, False, False)]
    assert a.members[1].mux is MuxState.ATTACHED
    # The partner is heard again (it has expired us, so it shows no Sync of ours): collecting only.
    t1 = last_rx + 3.5
    assert _changes(a.receive_frame(1, _ovs_pdu(a, 1, sees_our_sync=False), t1)) == [(1, True, False)]
    assert a.deadline <= a.next_deadline() == t1 + SYNC_GUARD_TIME
    # Link down while waiting for the guard: collecting stops at once, and no timer is left.
    assert _changes(a.set_link(1, False, t1 + 0.05)) == [(1, False, False)]
    assert a.next_deadline() is None
    # Link down while distributing: at once.
    b, t2 = _attached_and_collecting()
    b.receive_frame(1, _ovs_pdu(b, 1, sees_our_sync=True), t2)
    assert b.members[1].enabled
    assert _changes(b.set_link(1, False, t2 + 0.5)) == [(1, False, False)]


@pytest.mark.parametrize(
    "partner, gap",
    [(dict(prompt=True), 0.0), (dict(reflects_sync=False), SYNC_GUARD_TIME)],
    ids=["reflects our sync promptly", "never reflects our sync"],
)
def test_recovery_distributes_only_once_the_partner_takes_our_frames(partner, gap):
    lab, a, p = _ovs_lab((1, 2), **partner)
    lab.run(5.0)
    lab.set_carrier(lab.wires[0], False)
    lab.run(1.0)
    lab.set_carrier(lab.wires[0], True)
    collecting_at = distributing_at = None
    while distributing_at is None and lab.now < 20.0:
        lab.run(lab.step)
        member = a.members[1]
        if collecting_at is None and member.collecting:
            collecting_at = lab.now
        if member.enabled:
            distributing_at = lab.now
            assert p.members[1].synced_at is not None and p.members[1].synced_at <= lab.now
    assert collecting_at is not None and distributing_at is not None
    assert distributing_at - collecting_at == pytest.approx(gap, abs=lab.step + 1e-9)


def test_our_own_engine_as_partner_shows_our_sync_at_once():
    lab, a, b = paired()
    while not a.members[1].collecting:
        lab.run(lab.step)
    assert distributing(a) == {1, 2} and distributing(b) == {1, 2}  # no guard on either side


def test_member_wired_to_second_partner_stays_unselected():
    lab = Lab()
    a = bond(SW, ports=(1, 2, 3))
    b = bond(HOST, ports=(1, 2), key=7)
    c = bond(OTHER, ports=(3,), key=7)
    lab.connect((a, 1), (b, 1))
    lab.connect((a, 2), (b, 2))
    lab.connect((a, 3), (c, 3))
    lab.run(10.0)
    assert distributing(a) == {1, 2}
    assert not a.members[3].selected and a.members[3].mux is MuxState.DETACHED
    assert not a.members[3].actor_state() & LacpState.SYNCHRONIZATION
    assert distributing(c) == set()


def test_min_links():
    lab, a, b = paired(min_links=2)
    lab.run(5.0)
    assert distributing(a) == {1, 2}
    update = a.set_link(2, False, lab.now)
    assert distributing(a) == set()  # one member could, min_links says two
    assert {(c.port, c.distributing) for c in update.changes} == {(1, False), (2, False)}
    assert "min_links" in a.reason(1)
    lab.set_carrier(lab.wires[1], True)
    lab.run(5.0)
    assert distributing(a) == {1, 2}


def test_tx_rate_limited_to_three_per_fast_period():
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    sent = len(a.set_link(1, True, 0.0).transmit)  # the first PDU goes out at once
    partner_state = LacpState.ACTIVITY | LacpState.AGGREGATION | LacpState.TIMEOUT
    for i in range(10):  # the partner flips its view of us each time: we must answer
        stale = PortInfo(1, SW, 1, 1, 1, LacpState(i % 2))
        frame = encode_frame(HOST, Lacpdu(PortInfo(1, HOST, 7, 1, 1, partner_state), stale))
        sent += len(a.receive_frame(1, frame, 0.5 + i * 0.01).transmit)
    assert sent == 3
    assert a.members[1].counters.tx == 3
    assert len(a.tick(0.99).transmit) == 0  # still inside the fast periodic time of the first
    assert len(a.tick(1.0).transmit) == 1  # the pending need-to-transmit goes out when allowed


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        bytes.fromhex("0180c2000002") + bytes(6) + b"\x88\x09\x01\x01" + bytes(20),  # truncated
        None,  # filled in: wrong subtype
    ],
)
def test_garbled_frames_counted_and_ignored(frame):
    a = bond(SW, ports=(1,))
    a.set_link(1, True, 0.0)
    if frame is None:
        good = bytearray(encode_frame(HOST, Lacpdu(PortInfo(1, HOST, 7, 1, 1, LacpState(5)), PortInfo(0, SW, 0, 0, 0, LacpState(0)))))
        good[14] = 2  # marker subtype
        frame = bytes(good)
    update = a.receive_frame(1, frame, 1.0)
    assert update.changes == [] and a.members[1].counters.bad_rx == 1
    assert a.members[1].counters.rx == 0 and a.members[1].rx_state is RxState.EXPIRED


def _ports(update) -> list[int]:
    return [tx.port for tx in update.transmit]


def test_periodic_timers_keep_their_own_phases_when_one_late_tick_serves_several():
    a = bond(SW, ports=(1, 2), rate=Rate.FAST)
    assert _ports(a.set_link(1, True, 0.0)) == [1]
    assert _ports(a.set_link(2, True, 0.125)) == [2]
    assert _ports(a.tick(1.25)) == [1, 2]  # due at 1.0 and 1.125, sent by the same late tick ...
    assert _ports(a.tick(2.0)) == [1]  # ... yet each timer restarted from its own expiry, not from 1.25
    assert _ports(a.tick(2.125)) == [2]


def test_a_tick_late_by_several_periods_sends_one_pdu_and_keeps_the_phase():
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    a.set_link(1, True, 0.0)
    assert _ports(a.tick(3.0)) == [1]  # periodic due since 1.0, and the member defaulted
    assert _ports(a.tick(6.5)) == [1]  # expiries at 4, 5 and 6 missed: one PDU, no burst
    assert _ports(a.tick(6.9)) == []
    assert _ports(a.tick(7.0)) == [1]  # still on whole seconds


def test_expiry_towards_a_fast_partner_keeps_the_periodic_phase():
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    a.set_link(1, True, 0.0)
    _deliver_one_pdu(a, 0.5)  # a fast partner, heard once
    for now in (1.0, 2.0, 3.0):
        assert _ports(a.tick(now)) == [1]
    assert _ports(a.tick(3.5)) == [1]  # current_while ran out: Expired is news, sent at once
    assert a.members[1].rx_state is RxState.EXPIRED
    assert _ports(a.tick(3.9)) == []
    assert _ports(a.tick(4.0)) == [1]  # the periodic timer went on from 0.0, as 802.1AX's does


def test_a_repeated_frame_is_handled_like_a_fresh_one():
    a = bond(SW, ports=(1,), rate=Rate.FAST)
    a.set_link(1, True, 0.0)
    actor = PortInfo(1, HOST, 7, 1, 1, LacpState.ACTIVITY | LacpState.AGGREGATION | LacpState.TIMEOUT)
    first = encode_frame(HOST, Lacpdu(actor, a.members[1].actor_info()))
    other = encode_frame(HOST, Lacpdu(PortInfo(1, HOST, 8, 1, 1, actor.state), a.members[1].actor_info()))
    for now, frame, key in [(0.1, first, 7), (0.2, first + bytes(4), 7), (0.3, other, 8), (0.4, first, 7)]:
        a.receive_frame(1, frame, now)  # the second carries an FCS: the same LACPDU
        assert a.members[1].partner.key == key and a.members[1].counters.last_rx == now
    a.receive_frame(1, first[:-1], 0.5)
    assert a.members[1].counters.rx == 4 and a.members[1].counters.bad_rx == 1
