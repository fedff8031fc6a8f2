"""Throwaway network namespaces for tests and the lab: hosts, VMs and links.

Test fixtures may use iproute2 here: this builds the *world* the collection
runs in; the collection itself never shells out to ip/brctl/bridge.
Every object is named with the lab's prefix so ``destroy()`` removes exactly
what it made, also after a failed test.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional


def sh(*argv: str, check: bool = True, timeout: float = 30, input: Optional[str] = None
       ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout, input=input)


def link_witness(ns: str) -> dict:
    """Everything the kernel says about the links of ``ns`` that is configuration, by name.

    Tests compare it before and after a failed run to prove the host was left as it was.
    """
    links = json.loads(sh("ip", "-n", ns, "-d", "-j", "link", "show").stdout)
    for link in links:  # counters, timers and STP port states move on their own: not configuration
        for derived in ("stats64", "tso_max_size", "tso_max_segs", "gso_max_size", "gso_max_segs", "gro_max_size"):
            link.pop(derived, None)  # offload limits follow the current ports
        # Carrier is runtime state the kernel updates asynchronously (linkwatch), not configuration.
        link["flags"] = [f for f in link.get("flags", []) if f not in ("NO-CARRIER", "LOWER_UP")]
        link.pop("operstate", None)
        for section in ("info_data", "info_slave_data"):
            info = link.get("linkinfo", {}).get(section, {})
            for key in [k for k in info if k.endswith("_timer")]:
                info.pop(key)
        link.get("linkinfo", {}).get("info_slave_data", {}).pop("state", None)
        # STP identifiers derive from the bridge MAC and its ports; a rollback restores the MAC of a
        # bridge that was not pinned, which the kernel then also uses as its bridge id.
        for derived in ("bridge_id", "root_id"):
            link.get("linkinfo", {}).get("info_data", {}).pop(derived, None)
    return {link["ifname"]: link for link in links}


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


@dataclass
class NetLab:
    """A set of namespaces named ``<prefix>-<role>``; ``destroy()`` deletes them all."""

    prefix: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        if not netns_exists(name):
            sh("ip", "netns", "add", name)
            self.namespaces.append(name)
            self.run(name, "ip", "link", "set", "lo", "up")
        return name

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def link(self, ns_a: str, name_a: str, ns_b: str, name_b: str, *, up: bool = True) -> None:
        """A veth pair with one end in each namespace (the ends may be renamed VIFs, PIFs...)."""
        tmp_a, tmp_b = "v" + uuid.uuid4().hex[:10], "v" + uuid.uuid4().hex[:10]
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", ns_a, "name", name_a)
        sh("ip", "link", "set", tmp_b, "netns", ns_b, "name", name_b)
        if up:
            self.run(ns_a, "ip", "link", "set", name_a, "up")
            self.run(ns_b, "ip", "link", "set", name_b, "up")

    def vm(self, host_ns: str, domid: int, devid: int = 0, address: Optional[str] = None,
           vm_ns: Optional[str] = None) -> str:
        """A VM namespace whose eth<devid> is wired to ``vif<domid>.<devid>`` in ``host_ns``."""
        vm_ns = vm_ns or self.ns(f"vm{domid}")
        self.link(host_ns, f"vif{domid}.{devid}", vm_ns, f"eth{devid}")
        if address:
            self.run(vm_ns, "ip", "addr", "add", address, "dev", f"eth{devid}")
        return vm_ns

    def ping(self, ns: str, target: str, count: int = 2, wait: float = 1.0) -> bool:
        result = self.run(ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(wait), target,
                          check=False, timeout=count * wait + 10)
        return result.returncode == 0

    def ping_until(self, ns: str, target: str, attempts: int = 10) -> bool:
        """Ping until one succeeds (a bridge port can take a moment to forward); bounded."""
        return any(self.ping(ns, target, count=1) for _attempt in range(attempts))

    def destroy(self, extra: Sequence[str] = ()) -> None:
        for name in list(self.namespaces) + list(extra):
            if netns_exists(name):
                sh("ip", "netns", "pids", name, check=False)
                sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
