"""vswitchd's one event loop: an epoll set, the queues the ports share, timers and sliced work.

Everything runs in this one thread (TAP close-downs aside, see ``TapCloser``). A turn of the
loop is: poll (without waiting while anything is pending), run the handler of every ready
fd, serve the receive rings left on the backlog, hand every queued transmit ring to the
kernel, run the timers that are due, then give each source of sliced work (the control
server) one bounded slice. Control work therefore waits behind forwarding, never the
other way round.
"""
from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .ports import TapCloser

if TYPE_CHECKING:   # aliases for hints only: subscripting collections.abc types needs Python 3.9
    Handler = Callable[[int, float], None]

log = logging.getLogger("vswitchd.main")

READABLE, WRITABLE = select.EPOLLIN, select.EPOLLOUT
HANGUP = select.EPOLLERR | select.EPOLLHUP
MAX_EVENTS = 512
MAX_WAIT = 1.0   # seconds; the loop wakes at least this often even with no timer due
# Sliced work (control requests) may take this share of the loop's time, measured by a token bucket
# that holds at most WORK_BURST seconds of credit and at most WORK_BURST of debt: a client that keeps
# the control plane busy cannot take the CPU that forwarding and the hosts' own traffic need (on a
# 2-core host a flood of cheap requests otherwise runs vswitchd and the flooder at 100 % each), and one
# long request (a 1,000-port transaction) delays the next by at most WORK_BURST / WORK_SHARE.
WORK_SHARE = 0.2
WORK_BURST = 0.005


class SlicedWork(Protocol):
    def pending(self) -> bool:
        """True while there is work left: the loop then polls without waiting."""

    def run_slice(self, now: float) -> None:
        """Do one bounded piece of the work."""


class Timer:
    def __init__(self, interval: float, action: Callable[[float], None], now: float) -> None:
        self.interval = interval
        self.action = action
        self.due = now


class EventLoop:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.poller = select.epoll()
        self.handlers: dict[int, Handler] = {}
        # Ports with frames queued in their transmit ring: flushed once after each batch of events.
        self.dirty: list[Any] = []
        # Receive rings whose wake-up ended at RX_BUDGET with frames still waiting: served again before
        # the next poll. A packet socket reads as ready only while the slot just before the kernel's
        # write head is ours, so after a slot the kernel claimed and then dropped (left as its own) a
        # full ring may never read as ready again: waiting for epoll alone can stall a port for good.
        self.backlog: set[Any] = set()
        self.closer = TapCloser()
        self.timers: list[Timer] = []
        self.work: list[SlicedWork] = []
        self.work_credit = WORK_BURST
        self.work_refilled = clock()
        self.errors = 0
        self.stopped: Optional[int] = None

    # -- file descriptors ------------------------------------------------------------------------------
    def register(self, fd: int, handler: Handler, events: int = READABLE) -> None:
        self.handlers[fd] = handler
        self.poller.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self.poller.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        self.poller.unregister(fd)

    # -- timers and sliced work ------------------------------------------------------------------------
    def every(self, interval: float, action: Callable[[float], None]) -> Timer:
        timer = Timer(interval, action, self.clock())
        self.timers.append(timer)
        return timer

    def add_work(self, work: SlicedWork) -> None:
        self.work.append(work)

    def stop(self, reason: int) -> None:
        self.stopped = reason

    # -- running ---------------------------------------------------------------------------------------
    def run(self) -> int:
        """Turn until ``stop`` is called; returns the reason given to it."""
        while self.stopped is None:
            self.turn()
        return self.stopped

    def _timeout(self, now: float) -> float:
        if self.backlog:
            return 0.0   # look, don't wait
        due = min((timer.due for timer in self.timers), default=now + MAX_WAIT)
        if any(work.pending() for work in self.work):
            self._refill(now)
            if self.work_credit > 0:
                return 0.0
            due = min(due, now - self.work_credit / WORK_SHARE)   # when the credit is back
        return max(0.0, min(MAX_WAIT, due - now))

    def _refill(self, now: float) -> None:
        self.work_credit = min(WORK_BURST, self.work_credit + (now - self.work_refilled) * WORK_SHARE)
        self.work_refilled = now

    def turn(self) -> None:
        try:
            events = self.poller.poll(self._timeout(self.clock()), MAX_EVENTS)
        except InterruptedError:
            return
        now = self.clock()
        for fd, mask in events:
            handler = self.handlers.get(fd)
            if handler is not None:
                self._guarded(handler, mask, now, fd)
        if self.backlog:
            waiting = list(self.backlog)
            self.backlog.clear()
            for io in waiting:
                try:
                    io.receive(now)
                except Exception:  # noqa: BLE001 - as for any handler
                    self._count_error(io.fileno())
        self.flush_dirty()
        for timer in self.timers:
            if now >= timer.due:
                timer.due = now + timer.interval
                timer.action(now)
        self._refill(now)
        for work in self.work:
            if work.pending() and self.work_credit > 0:
                work.run_slice(now)
                spent = self.clock() - now
                now += spent
                self.work_credit = max(-WORK_BURST, self.work_credit - spent)

    def flush_dirty(self) -> None:
        if self.dirty:
            for io in self.dirty:
                io.flush()
            self.dirty.clear()

    def _guarded(self, handler: Handler, mask: int, now: float, fd: int) -> None:
        try:
            handler(mask, now)
        except Exception:  # noqa: BLE001 - one bad frame or request must not stop the switch
            self._count_error(fd)

    def _count_error(self, fd: int) -> None:
        self.errors += 1
        if self.errors <= 100 or self.errors % 10000 == 0:
            log.exception("unexpected error handling fd %d (%d so far)", fd, self.errors)

    def close(self) -> None:
        self.closer.drain()
        self.poller.close()
