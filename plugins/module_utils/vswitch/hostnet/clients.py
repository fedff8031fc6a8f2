"""DHCP clients the distribution runs on the uplink (dhclient from ifup, udhcpc, dhcpcd).

Left running, such a client would renew the NIC's old lease and put the IP back on the NIC,
which is now a bridge port. The move stops it; a rollback starts it again with the same command
line; a committed DHCP move starts it for the bridge instead (the same command with the NIC's
name replaced, as ifup would have run it for the bridge), so the lease keeps being renewed.
Processes are found through /proc in this network namespace only.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

NAMES = ("dhclient", "udhcpc", "udhcpc6", "dhcpcd", "pump")
SBIN_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


def _netns() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _argv(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _processes() -> list[dict[str, Any]]:
    """Every DHCP client process in this network namespace."""
    own, found = _netns(), []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        argv = _argv(pid)
        if not argv or os.path.basename(argv[0]) not in NAMES:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != own:
                continue
        except OSError:
            continue
        found.append({"pid": int(pid), "argv": argv})
    return found


def families(argv: list[str]) -> set[int]:
    """Which address families a client's command line serves: dhclient and dhcpcd say -4/-6 (dhclient
    without either is IPv4, dhcpcd without either does both), udhcpc6 is IPv6, the others IPv4."""
    name = os.path.basename(argv[0]) if argv else ""
    if name == "udhcpc6" or (name in ("dhclient", "dhcpcd") and "-6" in argv[1:]):
        return {6}
    if name == "dhcpcd" and "-4" not in argv[1:]:
        return {4, 6}
    return {4}


def find(interface: str) -> list[dict[str, Any]]:
    """DHCP client processes in this namespace whose command line names ``interface``."""
    return [client for client in _processes() if interface in client["argv"][1:]]


def stop(clients: list[dict[str, Any]], timeout: float = 3.0) -> None:
    """SIGTERM (dhclient then exits without releasing or deconfiguring), SIGKILL after ``timeout``."""
    for client in clients:
        _signal(client["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for client in clients:
        while _running(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(client):
            _signal(client["pid"], signal.SIGKILL)


def _running(client: dict[str, Any]) -> bool:
    return _argv(str(client["pid"])) == client["argv"]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def rehome(argv: list[str], uplink: str, bridge: str) -> list[str]:
    """The same command for the bridge: the interface argument and file names like dhclient.eth0.pid."""
    out = []
    for arg in argv:
        if arg == uplink:
            out.append(bridge)
        else:
            out.append(arg.replace(f".{uplink}.", f".{bridge}.").replace(f"-{uplink}.", f"-{bridge}."))
    return out


def executable(name: str) -> str:
    """The file to run for a command line's first word: /proc shows it as it was typed (`dhclient eth0`
    started by hand), and the module's own PATH may lack the sbin directories."""
    if "/" in name:
        return name
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN_PATH])) or name


def start(argv: list[str]) -> None:
    """Run ``argv`` detached (own session, no inherited descriptors), as its init script would."""
    path = executable(argv[0])
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        os.execv(path, argv)
    finally:
        os._exit(127)


def restart(clients: list[dict[str, Any]]) -> list[list[str]]:
    """Start again every client of ``clients`` whose command line is not running; returns what was started."""
    running = [client["argv"] for client in _processes()]
    started = []
    for client in clients:
        if client["argv"] not in running:
            start(client["argv"])
            started.append(client["argv"])
    return started
