"""Stable identities a host derives for itself: the MAC of a bridge it creates.

A bridge's MAC is what neighbours' ARP caches hold for the host's IP on it, so it must not
change when the bridge is rebuilt, the daemon restarts, or the host reboots; and two hosts must
not pick the same one. It is derived from the machine id, the network namespace (several hosts
may share one machine: containers, the lab) and the bridge name. The initial namespace's
identity is a kernel constant, so a host's bridge MACs are the same after every reboot.
"""
from __future__ import annotations

import hashlib
import os


def stable_mac(bridge: str) -> str:
    """A locally administered unicast MAC for ``bridge`` on this host."""
    try:
        with open("/etc/machine-id", encoding="ascii") as handle:
            machine = handle.read().strip()
    except OSError:
        machine = ""
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = ""
    digest = bytearray(hashlib.sha256(f"{machine}/{netns}/{bridge}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)
