"""What the BPF unit tests need: root, the bpf() syscall, and a few real devices for ifindexes.

``BPF_PROG_TEST_RUN`` with an ingress ifindex and devmap entries both look devices up in the
caller's network namespace, so the tests run in a namespace of their own (entered by setns for
the test and left after) holding veth pairs that never carry traffic.
"""
from __future__ import annotations

import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000


def why_no_bpf() -> str:
    if os.geteuid() != 0:
        return "BPF tests need root (bpf() and namespaces)"
    from vswitch.daemon.bpf import syscall
    try:
        syscall.Map(syscall.MAP_ARRAY, 4, 4, 1, "xp_probe").close()
    except OSError as err:
        return f"the kernel refuses bpf(): {err}"
    return ""


def why_no_live_frames() -> str:
    """Why ``BPF_PROG_TEST_RUN`` cannot really send what an XDP program redirects here, or "".

    Seen: a machine whose root runs without CAP_SYS_RESOURCE gets EPERM for every live run, while
    ordinary test runs work; the live tests then skip with the kernel's answer instead of failing.
    """
    from vswitch.daemon.bpf import asm, syscall
    passer = syscall.Prog(syscall.PROG_XDP, asm.Program().emit(asm.mov(asm.R0, 2), asm.exit_()).assemble(),
                          "xp_live_probe")
    try:
        passer.test_run(bytes(64), live=True)
    except OSError as err:
        with open("/proc/self/status", encoding="ascii") as handle:
            caps = next((line.split()[1] for line in handle if line.startswith("CapEff:")), "?")
        return f"the kernel refuses live XDP test runs (BPF_F_TEST_XDP_LIVE_FRAMES): {err} (CapEff {caps})"
    finally:
        passer.close()
    return ""


@contextmanager
def netns_with_veths(name: str, count: int) -> Iterator[list]:
    """Enter a fresh namespace ``name`` with ``count`` veth pairs; yields their ifindexes (one side each)."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        for number in range(count):
            subprocess.run(["ip", "-n", name, "link", "add", f"xp-u{number}", "type", "veth", "peer", "name",
                            f"xp-v{number}"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", f"xp-u{number}", "up"], check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(target)
        try:
            yield [socket.if_nametoindex(f"xp-u{number}") for number in range(count)]
        finally:
            libc.setns(home, CLONE_NEWNET)
    finally:
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], check=False)
