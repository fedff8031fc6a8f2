"""vswitchd's entry point: ``python3 -m vswitch.daemon --state-file PATH --socket PATH``.

One thread, one epoll loop: port receive rings/TAPs, the control socket and a
signal wake-up pipe are all in it. systemd integration is done by hand (no libsystemd):
READY=1 once every bridge and port is restored and the socket listens, WATCHDOG=1 from
the loop itself (so a wedged loop stops pinging and systemd restarts us), STOPPING=1 on
SIGTERM/SIGINT, after which the socket is removed and every TAP closed.
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Optional

from .. import paths, proctitle
from ..errors import VswitchError
from . import ports
from .db import StateFile
from .fdb import DEFAULT_LIMIT
from .server import LOG_LEVELS, ControlServer, make_methods
from .switch import Switch

log = logging.getLogger("vswitchd.main")
VERSION = "1.0"


class Notifier:
    """sd_notify(3) over $NOTIFY_SOCKET, without libsystemd."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.sock: Optional[socket.socket] = None
        if address:
            if address.startswith("@"):
                address = "\0" + address[1:]
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.connect(address)
                self.sock = sock
            except OSError as err:
                log.warning("NOTIFY_SOCKET %r unusable: %s", address, err)
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = 0
        self.watchdog_interval = usec / 2e6 if usec > 0 else 0.0

    def notify(self, message: str) -> None:
        if self.sock is not None:
            try:
                self.sock.send(message.encode())
            except OSError as err:
                log.warning("sd_notify failed: %s", err)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vswitchd", description="openvif userspace switching daemon")
    parser.add_argument("--state-file", default=paths.state_file(), help="durable state (default %(default)s)")
    parser.add_argument("--socket", default=paths.socket_path(), help="control socket (default %(default)s)")
    parser.add_argument("--fdb-limit", type=int, default=int(os.environ.get("VSWITCHD_FDB_LIMIT", DEFAULT_LIMIT)),
                        help="learned MAC entries per bridge (default %(default)s)")
    parser.add_argument("--log-level", default=os.environ.get("VSWITCHD_LOG_LEVEL", "info"),
                        choices=sorted(LOG_LEVELS))
    args = parser.parse_args(argv)
    if args.fdb_limit < 0:
        parser.error("--fdb-limit must be >= 0")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    proctitle.set_name("vswitchd")   # pgrep vswitchd / ps / top, not "python3"
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vswitchd").setLevel(LOG_LEVELS[args.log_level])

    poller = select.epoll()
    handlers: dict[int, Callable[[int, float], None]] = {}

    def register(fd: int, handler: Callable[[int, float], None], events: int = select.EPOLLIN) -> None:
        handlers[fd] = handler
        poller.register(fd, events)

    def unregister(fd: int) -> None:
        handlers.pop(fd, None)
        poller.unregister(fd)

    stop = []
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)

    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    register(wake_r, lambda ev, now: os.read(wake_r, 512))

    switch = Switch(StateFile(args.state_file), args.fdb_limit, register, unregister)
    try:
        switch.restore()
    except VswitchError as err:
        log.critical("cannot start: %s", err.message)
        return 1
    gc.freeze()   # what start-up built (bridges, ports, buffers) is never garbage: keep it out of GC scans
    info = {"version": VERSION, "pid": os.getpid(), "state_file": switch.db.path, "socket": args.socket}
    try:
        server = ControlServer(args.socket, make_methods(switch, time.monotonic, info), register,
                               poller.modify, unregister)
    except OSError as err:
        log.critical("cannot listen on %s: %s", args.socket, err)
        switch.close()
        return 1
    notifier = Notifier()
    notifier.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=forwarding: {len(switch.bridges)} bridges, "
                    f"{len(switch.ports)} ports")
    log.info("vswitchd %s ready: socket %s, state file %s", VERSION, args.socket, switch.db.path)
    if notifier.watchdog_interval:
        notifier.notify("WATCHDOG=1")

    next_tick = next_ping = time.monotonic()
    errors = 0
    while not stop:
        now = time.monotonic()
        wake = min(next_tick, next_ping) if notifier.watchdog_interval else next_tick
        timeout = 0.0 if ports.backlog else max(0.0, min(1.0, wake - now))  # backlog: look, don't wait
        try:
            events = poller.poll(timeout, 512)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd, ev in events:
            handler = handlers.get(fd)
            if handler is None:
                continue
            try:
                handler(ev, now)
            except Exception:  # noqa: BLE001 - one bad frame or request must not stop the switch
                errors += 1
                if errors <= 100 or errors % 10000 == 0:
                    log.exception("unexpected error handling fd %d (%d so far)", fd, errors)
        if ports.backlog:
            waiting = list(ports.backlog)
            ports.backlog.clear()
            for io in waiting:
                try:
                    io.receive(now)
                except Exception:  # noqa: BLE001 - as for any handler
                    errors += 1
        if ports.dirty:
            ports.flush_dirty()
        if now >= next_tick:
            next_tick = now + 1.0
            switch.tick(now)
            server.tick(now)
        if notifier.watchdog_interval and now >= next_ping:
            next_ping = now + notifier.watchdog_interval
            notifier.notify("WATCHDOG=1")
    log.info("stopping on signal %d", stop[0])
    notifier.notify("STOPPING=1")
    server.close()
    switch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
