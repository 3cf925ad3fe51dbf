"""An eventlet hub that wakes ready sockets in the order the kernel reported them.

Eventlet's poll/epoll hub collects the callbacks of one poll into a ``set`` and runs them
in hash order, which is unrelated to when each socket became ready. Under load, a REST
client whose request arrived first in a poll round can then be served last, and a
closed-loop client can wait almost two rounds instead of one: p99 latency about twice
p50. epoll reports ready descriptors first come, first served; this hub keeps that order
(duplicates removed), so every request waits about one round.
"""

from __future__ import annotations

import errno
import sys

import eventlet.hubs
from eventlet import patcher
from eventlet.hubs import epolls, hub

_select = patcher.original("select")
_time = patcher.original("time")


class FifoHub(epolls.Hub):
    """``epolls.Hub`` whose :meth:`wait` calls back in poll order."""

    def wait(self, seconds: float | None = None) -> None:
        """Poll once for up to ``seconds`` and run the ready listeners, first ready first."""
        readers = self.listeners[self.READ]
        writers = self.listeners[self.WRITE]
        if not readers and not writers:
            if seconds:
                _time.sleep(seconds)
            return
        try:
            events = self.do_poll(seconds)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            raise
        if self.debug_blocking:
            self.block_detect_pre()
        # Collected before any runs, as eventlet does: one callback may remove another's listener.
        ready: dict[tuple[object, int], None] = {}
        noop = hub.noop
        for fileno, event in events:
            if event & self.READ_MASK:
                ready[(readers.get(fileno, noop), fileno)] = None
            if event & self.WRITE_MASK:
                ready[(writers.get(fileno, noop), fileno)] = None
            if event & _select.POLLNVAL:
                self.remove_descriptor(fileno)
                continue
            if event & self.EXC_MASK:
                ready[(readers.get(fileno, noop), fileno)] = None
                ready[(writers.get(fileno, noop), fileno)] = None
        for listener, fileno in ready:
            try:
                listener.cb(fileno)  # type: ignore[attr-defined]
            except self.SYSTEM_EXCEPTIONS:
                raise
            except BaseException:  # noqa: BLE001 - eventlet's own policy: log and go on
                self.squelch_exception(fileno, sys.exc_info())
        if self.debug_blocking:
            self.block_detect_post()


def is_available() -> bool:
    """What ``eventlet.hubs.use_hub`` asks of a hub module."""
    return epolls.is_available()


def install() -> bool:
    """Make :class:`FifoHub` this thread's hub, if no hub runs yet; True if it is the hub.

    Call before any green thread starts: eventlet's ``use_hub`` drops a running hub's
    timers and listeners, so a hub that already exists is left alone.
    """
    if not epolls.is_available():
        return False
    # ``_threadlocal.hub`` is eventlet's running hub (documented in use_hub, not public API).
    current = getattr(eventlet.hubs._threadlocal, "hub", None)  # noqa: SLF001
    if current is None:
        eventlet.hubs.use_hub(FifoHub)
        return True
    return isinstance(current, FifoHub)
