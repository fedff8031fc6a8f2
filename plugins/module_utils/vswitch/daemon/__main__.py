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
import signal
import socket
import sys
import time
from typing import Optional

from .. import paths, proctitle
from ..errors import VswitchError
from . import faults
from .db import StateFile
from .fastpath import CHOICES as FAST_CHOICES
from .fastpath import XDP_ON_VETH_ENV
from .fdb import DEFAULT_LIMIT
from .loop import EventLoop
from .methods import LOG_LEVELS, make_methods
from .server import ControlServer
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
    parser.add_argument("--datapath", default=os.environ.get("VSWITCHD_DATAPATH", "auto"), choices=FAST_CHOICES,
                        help="auto: XDP fast path wherever it works, rings elsewhere; xdp: refuse to start "
                             "without BPF; rings: Python only (default %(default)s)")
    parser.add_argument("--xdp-on-veth", action="store_true", default=os.environ.get(XDP_ON_VETH_ENV) == "1",
                        help="put XDP on veths too (their peers send 802.1Q tags inside the frame, or none); by "
                             "default they take the skb path, which reads tags from the skb's metadata")
    parser.add_argument("--log-level", default=os.environ.get("VSWITCHD_LOG_LEVEL", "info"),
                        choices=sorted(LOG_LEVELS))
    args = parser.parse_args(argv)
    if args.fdb_limit < 0:
        parser.error("--fdb-limit must be >= 0")
    return args


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vswitchd").setLevel(LOG_LEVELS[level])


def stop_on_signals(loop: EventLoop) -> None:
    """SIGTERM/SIGINT end the loop; the wake-up pipe makes a signal interrupt a poll at once."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda signum, _frame: loop.stop(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: loop.stop(signum))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    loop.register(wake_r, lambda ev, now: os.read(wake_r, 512))


def start_switch(args: argparse.Namespace, loop: EventLoop) -> Optional[Switch]:
    """Every bridge and port of the state file back in service, or None (logged) if that cannot be."""
    try:
        switch = Switch(StateFile(args.state_file), args.fdb_limit, loop, datapath=args.datapath,
                        xdp_on_veth=args.xdp_on_veth)
    except OSError as err:
        log.critical("cannot start with --datapath %s: %s", args.datapath, err)
        return None
    try:
        switch.restore()
    except VswitchError as err:
        log.critical("cannot start: %s", err.message)
        return None
    loop.every(1.0, switch.tick)
    gc.freeze()   # what start-up built (bridges, ports, buffers) is never garbage: keep it out of GC scans
    return switch


def listen(args: argparse.Namespace, switch: Switch, loop: EventLoop) -> Optional[ControlServer]:
    info = {"version": VERSION, "pid": os.getpid(), "state_file": switch.db.path, "socket": args.socket}
    try:
        return ControlServer(args.socket, make_methods(switch, time.monotonic, info), loop)
    except OSError as err:
        log.critical("cannot listen on %s: %s", args.socket, err)
        return None


def announce_ready(notifier: Notifier, switch: Switch, loop: EventLoop, socket_path: str) -> None:
    notifier.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=forwarding: {len(switch.bridges)} bridges, "
                    f"{len(switch.ports)} ports")
    log.info("vswitchd %s ready: socket %s, state file %s", VERSION, socket_path, switch.db.path)
    if notifier.watchdog_interval:
        # From the loop itself, so a wedged loop stops pinging and systemd restarts us.
        loop.every(notifier.watchdog_interval, lambda now: notifier.notify("WATCHDOG=1"))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    proctitle.set_name("vswitchd")   # pgrep vswitchd / ps / top, not "python3"
    setup_logging(args.log_level)
    try:
        faults.arm(os.environ.get(faults.ENV))
    except ValueError as err:
        log.critical("cannot start: %s", err)
        return 1
    loop = EventLoop()
    stop_on_signals(loop)
    switch = start_switch(args, loop)
    if switch is None:
        return 1
    server = listen(args, switch, loop)
    if server is None:
        switch.close()
        return 1
    notifier = Notifier()
    announce_ready(notifier, switch, loop, args.socket)
    signum = loop.run()
    log.info("stopping on signal %d", signum)
    notifier.notify("STOPPING=1")
    server.close()
    switch.close()
    loop.close()
    return 0


if __name__ == "__main__":
    # SystemExit rather than sys.exit: this file is module_utils, where sanity forbids sys.exit.
    raise SystemExit(main())
